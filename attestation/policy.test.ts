import { describe, expect, it } from 'vitest';
import { AttestationError } from './errors.ts';
import { checkPolicyStrength, isPolicyWidening, ownerBindings, parsePcrPolicy, pcr3ForRoleArn, policyWidening } from './policy.ts';
import { DEV_PARENT_ROLE_ARN, DEV_PCR3 } from './dev.ts';

const h = (c: string) => c.repeat(96);
const Z = h('0');
const image = { '0': h('a'), '1': h('b'), '2': h('c') };

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof AttestationError) return e.code;
    throw e;
  }
  return 'no error';
}

const strength = (allow: unknown[], mode: 'production' | 'dev' = 'production', allowDebug?: boolean) =>
  codeOf(() => checkPolicyStrength(parsePcrPolicy({ allow, ...(allowDebug === undefined ? {} : { allowDebug }) }), { mode }));

describe('PCR policy strength', () => {
  it('accepts in production the image PCRs plus PCR3, PCR8 or both', () => {
    expect(strength([{ ...image, '3': h('d') }])).toBe('no error');
    expect(strength([{ ...image, '8': h('e') }])).toBe('no error');
    expect(strength([{ ...image, '3': h('d'), '8': h('e'), '4': h('f') }])).toBe('no error');
  });

  it('refuses in production a set naming only PCR3, PCR4 or PCR8', () => {
    for (const set of [{ '3': h('d') }, { '4': h('d') }, { '8': h('d') }, { '3': h('d'), '4': h('d'), '8': h('d') }]) {
      expect(strength([set])).toBe('attestation_policy_weak');
    }
  });

  it('refuses in production when any one set of several is weak', () => {
    expect(strength([{ ...image, '3': h('d') }, { '4': h('d') }])).toBe('attestation_policy_weak');
  });

  it('refuses in production a set lacking a binding, or with all-zero image or binding PCRs', () => {
    expect(strength([image])).toBe('attestation_policy_weak');
    expect(strength([{ ...image, '3': Z }])).toBe('attestation_policy_weak');
    expect(strength([{ ...image, '8': Z }])).toBe('attestation_policy_weak');
    expect(strength([{ ...image, '1': Z, '3': h('d') }])).toBe('attestation_policy_weak');
  });

  it('refuses allowDebug and an empty allow-list in production', () => {
    expect(strength([{ ...image, '3': h('d') }], 'production', true)).toBe('attestation_policy_weak');
    expect(strength([])).toBe('attestation_policy_weak');
  });

  it('holds dev mode to the same sets: PCR0-2 and an owner binding (only debug and zero PCRs stay possible)', () => {
    expect(strength([{ '0': h('a') }], 'dev')).toBe('attestation_policy_weak');
    expect(strength([image], 'dev')).toBe('attestation_policy_weak');
    expect(strength([{ '4': h('a') }], 'dev')).toBe('attestation_policy_weak');
    expect(strength([{ '1': h('a'), '2': h('a'), '8': h('d') }], 'dev')).toBe('attestation_policy_weak');
    expect(strength([{ ...image, '8': h('d') }], 'dev')).toBe('no error');
    expect(strength([{ ...image, '3': h('d') }], 'dev', true)).toBe('no error');
  });
});

describe('owner bindings', () => {
  it('computes PCR3 as SHA-384 over 48 zero bytes and the role ARN', async () => {
    const { createHash } = await import('node:crypto');
    const want = createHash('sha384').update(Buffer.concat([Buffer.alloc(48), Buffer.from(DEV_PARENT_ROLE_ARN)])).digest();
    expect(Buffer.from(pcr3ForRoleArn(DEV_PARENT_ROLE_ARN)).equals(want)).toBe(true);
    expect(DEV_PCR3).toEqual(pcr3ForRoleArn(DEV_PARENT_ROLE_ARN));
  });

  it('reports non-zero PCR3/PCR8 as bindings and all-zero ones as none', () => {
    const pcrs = new Map<number, Uint8Array>([[3, new Uint8Array(48).fill(1)], [8, new Uint8Array(48)]]);
    expect(ownerBindings(pcrs)).toEqual({ pcr3: '01'.repeat(48), pcr8: null });
  });
});

describe('policy widening', () => {
  const a = { '0': 'a'.repeat(96), '8': 'b'.repeat(96) };
  const b = { '0': 'c'.repeat(96), '8': 'b'.repeat(96) };
  it('calls a policy that adds an allowed set a widening, and names the set', () => {
    expect(policyWidening({ allow: [a] }, { allow: [a, b] }).added).toEqual([b]);
    expect(isPolicyWidening({ allow: [a] }, { allow: [a, b] })).toBe(true);
  });
  it('calls removing sets, or keeping them in another order, a narrowing', () => {
    expect(isPolicyWidening({ allow: [a, b] }, { allow: [b] })).toBe(false);
    expect(isPolicyWidening({ allow: [a, b] }, { allow: [{ '8': b['8'], '0': b['0'] }, a] })).toBe(false);
  });
  it('calls newly allowing debug mode a widening', () => {
    expect(isPolicyWidening({ allow: [a] }, { allow: [a], allowDebug: true })).toBe(true);
  });
});
