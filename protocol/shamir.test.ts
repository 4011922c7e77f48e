import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { utf8 } from './bytes.ts';
import { openUpstreamKey, type KeyBinding } from './sealed-record.ts';
import { sealUpstreamKey } from './owner/seal-upstream-key.ts';
import { combineSharesUnchecked, decodeShare, robustCombine, type Share } from './shamir.ts';
import { encodeShare, splitSecret } from './owner/shamir-split.ts';

const random = (n: number) => new Uint8Array(randomBytes(n));
const binding: KeyBinding = { connectionId: 'c1', provider: 'openai', origin: 'https://api.openai.com', authScheme: 'bearer' };

/** The check every real caller uses: does the combined DEK open the sealed record? */
function gcmCheck(record: Uint8Array) {
  return (dek: Uint8Array) => {
    if (dek.length !== 32) return false;
    try {
      openUpstreamKey(record, dek, binding);
      return true;
    } catch {
      return false;
    }
  };
}

const params = fc
  .integer({ min: 2, max: 7 })
  .chain((t) => fc.record({ t: fc.constant(t), n: fc.integer({ min: t, max: 9 }) }));

describe('Shamir split and combine', () => {
  it('any t of n shares open the sealed record', () => {
    fc.assert(
      fc.property(params, fc.infiniteStream(fc.nat()), ({ t, n }, picks) => {
        const dek = random(32);
        const record = sealUpstreamKey(utf8('sk-test'), dek, binding, random);
        const shares = splitSecret(dek, t, n);
        const pool = [...shares];
        const chosen: Share[] = [];
        const it = picks[Symbol.iterator]();
        while (chosen.length < t) chosen.push(pool.splice(it.next().value % pool.length, 1)[0]!);
        const result = robustCombine(chosen, t, gcmCheck(record));
        expect(result.secret).toEqual(dek);
        expect(result.badIndices).toEqual([]);
      }),
      { numRuns: 40 },
    );
  });

  it('any t−1 shares never open the sealed record', () => {
    fc.assert(
      fc.property(params, ({ t, n }) => {
        const dek = random(32);
        const record = sealUpstreamKey(utf8('sk-test'), dek, binding, random);
        const shares = splitSecret(dek, t, n).slice(0, t - 1);
        if (shares.length >= 2) {
          const guess = combineSharesUnchecked(shares);
          expect(gcmCheck(record)(guess)).toBe(false);
        }
        expect(() => robustCombine(shares, t, gcmCheck(record))).toThrow(
          expect.objectContaining({ code: 'shamir_combine_failed' }),
        );
      }),
      { numRuns: 40 },
    );
  });

  it('finds and names one corrupted share among t+1', () => {
    fc.assert(
      fc.property(params, fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 }), ({ t, n }, which, byte, x) => {
        fc.pre(n >= t + 1);
        const dek = random(32);
        const record = sealUpstreamKey(utf8('sk-test'), dek, binding, random);
        const shares = splitSecret(dek, t, n).slice(0, t + 1);
        const victim = which % shares.length;
        const data = shares[victim]!.data.slice();
        data[byte % data.length]! ^= x;
        shares[victim] = { index: shares[victim]!.index, data };
        const result = robustCombine(shares, t, gcmCheck(record));
        expect(result.secret).toEqual(dek);
        expect(result.badPositions).toEqual([victim]);
        expect(result.badIndices).toEqual([shares[victim]!.index]);
      }),
      { numRuns: 60 },
    );
  });

  it('refuses thresholds outside 2 ≤ t ≤ n ≤ 255', () => {
    const dek = random(32);
    for (const [t, n] of [
      [1, 3],
      [4, 3],
      [2, 256],
      [2.5, 3],
    ] as const) {
      expect(() => splitSecret(dek, t, n)).toThrow(expect.objectContaining({ code: 'shamir_invalid_parameters' }));
    }
  });

  it('refuses duplicate share indices instead of combining them', () => {
    const shares = splitSecret(random(32), 2, 3);
    expect(() => combineSharesUnchecked([shares[0]!, shares[0]!])).toThrow(
      expect.objectContaining({ code: 'shamir_invalid_parameters' }),
    );
  });

  it('encodes and decodes shares losslessly', () => {
    for (const share of splitSecret(random(32), 3, 5)) {
      expect(decodeShare(encodeShare(share))).toEqual(share);
    }
  });
});
