import { describe, expect, it } from 'vitest';
import { DEV_PARENT_ROLE_ARN, DEV_PCR3 } from '../attestation/dev-pcrs.ts';
import { DEFAULT_LEASES_PER_DAY, leaseLimitFor, maxLeasesPerDay, toHex, type ReleaseManifest } from '../protocol/index.ts';
import { connectionPolicyFromFlags, parseWideningDelay } from './connect.ts';
import { CliError } from './errors.ts';
import { ownerPcrPolicy } from './pcr-policy.ts';

const h = (c: string) => c.repeat(96);
const manifest = { version: 1, name: 'n', release: 'v1', gitCommit: 'abc', bundleSha384: h('a'), pcrs: { '0': h('a'), '1': h('b'), '2': h('c') }, nsm: 'nitro' } as ReleaseManifest;
const exitOf = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e instanceof CliError ? e.exitCode : 'other';
  }
  return 'none';
};

describe('the PCR policy connect pins', () => {
  it('pins the manifest image and the PCR8 given, and PCR3 computed from a role ARN', () => {
    const { policy, bindings } = ownerPcrPolicy({ manifest, flags: { pcr8: h('d'), pcr3: DEV_PARENT_ROLE_ARN }, dev: false });
    expect(policy.allow).toEqual([{ '0': h('a'), '1': h('b'), '2': h('c'), '3': toHex(DEV_PCR3), '8': h('d') }]);
    expect(bindings).toEqual({ pcr3: toHex(DEV_PCR3), pcr8: h('d') });
  });

  it('takes PCR8 from a manifest that carries one, when no flag or saved binding names any', () => {
    const signed = { ...manifest, pcrs: { ...manifest.pcrs, '8': h('e') } } as ReleaseManifest;
    expect(ownerPcrPolicy({ manifest: signed, flags: {}, dev: false }).policy.allow[0]!['8']).toBe(h('e'));
  });

  it('refuses (usage) an image without any owner binding, in production and in dev alike', () => {
    expect(exitOf(() => ownerPcrPolicy({ manifest, flags: {}, dev: false }))).toBe(2);
    expect(exitOf(() => ownerPcrPolicy({ configured: { allow: [{ '0': h('a') }] }, flags: {}, dev: true }))).toBe(2);
  });

  it('refuses a production policy that does not pin PCR1 and PCR2', () => {
    expect(exitOf(() => ownerPcrPolicy({ configured: { allow: [{ '0': h('a') }] }, flags: { pcr8: h('d') }, dev: false }))).toBe(2);
  });

  it('refuses an all-zero PCR8 and a malformed PCR3', () => {
    expect(exitOf(() => ownerPcrPolicy({ manifest, flags: { pcr8: '0'.repeat(96) }, dev: false }))).toBe(2);
    expect(exitOf(() => ownerPcrPolicy({ manifest, flags: { pcr3: 'role/securegate' }, dev: false }))).toBe(2);
  });
});

describe('connect flags', () => {
  it('reads widening delays and refuses a bare number other than 0', () => {
    expect(parseWideningDelay('24h')).toBe(86_400_000);
    expect(parseWideningDelay('0')).toBe(0);
    expect(exitOf(() => parseWideningDelay('90'))).toBe(2);
    expect(exitOf(() => parseWideningDelay('31d'))).toBe(2);
  });

  it('signs inference only by default, any for any-API connections, and refuses an unknown operation', () => {
    expect(connectionPolicyFromFlags('openai', {}).operations).toEqual(['inference']);
    expect(connectionPolicyFromFlags('any', {}).operations).toEqual(['any']);
    expect(exitOf(() => connectionPolicyFromFlags('openai', { operations: 'inference,files:erase' }))).toBe(2);
  });

  it('splits a request or token ceiling into leases the shareholders count, so no number of enclaves can exceed it', () => {
    expect(connectionPolicyFromFlags('openai', {}).lease).toBeUndefined();
    const policy = connectionPolicyFromFlags('openai', { dailyRequests: '1000', dailyTokens: '2000000' });
    expect(policy.lease).toEqual({ requests: Math.ceil(1000 / DEFAULT_LEASES_PER_DAY), tokens: Math.ceil(2_000_000 / DEFAULT_LEASES_PER_DAY) });
    for (const [n, t] of [[5, 3], [3, 2], [7, 2], [10, 9]] as const) {
      const k = leaseLimitFor(policy, n, t)!;
      expect(k, `${t}-of-${n}`).toBeGreaterThan(0);
      // Every lease any enclave can get, at its full quota, stays within each ceiling.
      expect(maxLeasesPerDay(n, t, k) * policy.lease!.requests!).toBeLessThanOrEqual(1000);
      expect(maxLeasesPerDay(n, t, k) * policy.lease!.tokens!).toBeLessThanOrEqual(2_000_000);
    }
    // A tiny ceiling still gets whole leases of one request each.
    expect(connectionPolicyFromFlags('openai', { dailyRequests: '5' }).lease).toEqual({ requests: 1 });
    // A zero ceiling refuses everything in every enclave already: nothing to split.
    expect(connectionPolicyFromFlags('openai', { dailyRequests: '0' }).lease).toBeUndefined();
  });
});
