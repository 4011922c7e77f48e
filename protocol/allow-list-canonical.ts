/**
 * The canonical form of an any-API request allow-list (SPEC.md §1, version 0x02): rules like
 * `GET /v1/customers/*` checked, methods upper-cased, sorted, de-duplicated, as JSON — the exact
 * string the owner seals into the record (CLI) and the host checks a new connection against. The
 * enclave only matches requests against the sealed string (`allow-list.ts`). Pure.
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
