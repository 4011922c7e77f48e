/**
 * Request allow-lists for any-API connections: rules like `GET /v1/customers/*` or
 * `POST /v1/payment_intents/**` (`*` one path segment, `**` any rest). The canonical form (sorted,
 * de-duplicated, upper-case methods, JSON; made by `allow-list-canonical.ts` on the owner's
 * machine and checked by the host) is bound into the sealed record, so the enclave and the owner
 * agree byte for byte on what may be called. This module is the matching the enclave runs. Pure.
 */

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
