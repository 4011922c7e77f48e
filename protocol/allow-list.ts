/**
 * Request allow-lists for any-API connections: rules like `GET /v1/customers/*` or
 * `POST /v1/payment_intents/**` (`*` one path segment, `**` any rest). The canonical form (sorted,
 * de-duplicated, upper-case methods, JSON) is bound into the sealed record, so the enclave and
 * the owner agree byte for byte on what may be called. Pure.
 */
import { ProtocolError } from './errors.ts';

const RULE = /^(GET|POST|PUT|PATCH|DELETE|HEAD) (\/[A-Za-z0-9._~\-/*:@]*)$/;

export function canonicalAllowList(rules: string[]): string {
  if (!Array.isArray(rules) || rules.length === 0 || rules.length > 200) {
    throw new ProtocolError('envelope_malformed', 'an allow-list needs 1..200 rules like "GET /v1/customers/*"');
  }
  const normalised = rules.map((r) => {
    const [method, path] = r.trim().split(/\s+/);
    const rule = `${(method ?? '').toUpperCase()} ${path ?? ''}`;
    if (!RULE.test(rule) || rule.includes('..') || rule.includes('//')) {
      throw new ProtocolError('envelope_malformed', `allow-list rule ${JSON.stringify(r)} must look like "GET /v1/customers/*"`);
    }
    return rule;
  });
  return JSON.stringify([...new Set(normalised)].sort());
}

function segmentsMatch(pattern: string[], path: string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p === '**') return path.length >= i;
    if (i >= path.length) return false;
    if (p !== '*' && p !== path[i]) return false;
    if (p === '*' && path[i] === '') return false;
  }
  return pattern.length === path.length;
}

/** True when `method path` (path without query) is allowed by the canonical list. */
export function allowListPermits(canonical: string, method: string, path: string): boolean {
  if (path.includes('..') || path.includes('//') || path.includes('%2') || path.includes('\\')) return false;
  let rules: string[];
  try {
    rules = JSON.parse(canonical) as string[];
  } catch {
    return false;
  }
  const segments = path.split('/').slice(1);
  return rules.some((rule) => {
    const [m, p] = rule.split(' ');
    return m === method.toUpperCase() && segmentsMatch(p!.split('/').slice(1), segments);
  });
}
