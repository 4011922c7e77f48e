/**
 * Lease limits for a connection policy (SPEC.md §9): how many leases t-of-n shareholders can grant
 * in a day, the lease quotas a daily ceiling gets when its owner names none, and the daily lease
 * limit k each shareholder enforces. Used by owners (onboarding, CLI, dashboard) and shareholders;
 * the enclave only enforces the lease terms a policy carries (`connection-policy.ts`). Pure.
 */
import type { ConnectionPolicy, DailyCeiling, LeaseTerms } from './connection-policy.ts';

/**
 * The most leases any number of enclaves can obtain in one UTC day when each of n shareholders
 * grants at most k and a lease needs t of them: every lease takes t distinct releases, so
 * leases ≤ ⌊n·k/t⌋ (SPEC.md §9).
 */
export function maxLeasesPerDay(n: number, t: number, k: number): number {
  return Math.floor((n * k) / t);
}

/** How many leases a day a ceiling is split into when the owner names no lease quota (one per ~15 min). */
export const DEFAULT_LEASES_PER_DAY = 96;

/**
 * Lease quotas for a daily ceiling whose owner named none, so the ceiling holds across enclave
 * restarts and many enclaves (⌊n·k/t⌋, SPEC.md §9) instead of only within one enclave's memory:
 * each dimension with a positive ceiling is split into DEFAULT_LEASES_PER_DAY leases (at least 1
 * each). Undefined when there is no such ceiling (nothing to bound).
 */
export function defaultLeaseTerms(ceiling: DailyCeiling): LeaseTerms | undefined {
  const lease: LeaseTerms = {};
  if (ceiling.requests !== undefined && ceiling.requests > 0) lease.requests = Math.max(1, Math.ceil(ceiling.requests / DEFAULT_LEASES_PER_DAY));
  if (ceiling.tokens !== undefined && ceiling.tokens > 0) lease.tokens = Math.max(1, Math.ceil(ceiling.tokens / DEFAULT_LEASES_PER_DAY));
  return lease.requests !== undefined || lease.tokens !== undefined ? lease : undefined;
}

/**
 * The per-shareholder daily lease limit k for a policy, chosen so that ⌊n·k/t⌋ leases cannot serve
 * more than the daily ceiling: for each dimension with both a ceiling C and a lease quota q, at
 * most L = ⌊C/q⌋ leases a day, so k = ⌊t·L/n⌋ (then ⌊n·k/t⌋ ≤ L). The smallest over the
 * dimensions; undefined when no dimension has both (nothing to bound). 0 means the lease quota is
 * too large for the ceiling with this n and t: choose a smaller quota.
 */
export function leaseLimitFor(policy: Pick<ConnectionPolicy, 'ceiling' | 'lease'>, n: number, t: number): number | undefined {
  let k: number | undefined;
  for (const [ceiling, quota] of [
    [policy.ceiling.requests, policy.lease?.requests],
    [policy.ceiling.tokens, policy.lease?.tokens],
  ] as const) {
    if (ceiling === undefined || quota === undefined) continue;
    const perDay = Math.floor((t * Math.floor(ceiling / quota)) / n);
    k = k === undefined ? perDay : Math.min(k, perDay);
  }
  return k;
}
