import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { generateSgKey, hashSgKey, isWellFormedSgKey } from './keys.ts';

describe('SG_ keys', () => {
  it('are well formed, carry at least 192 random bits and a valid checksum', () => {
    const keys = new Set(Array.from({ length: 200 }, () => generateSgKey()));
    expect(keys.size).toBe(200);
    for (const k of keys) expect(isWellFormedSgKey(k)).toBe(true);
    expect(62 ** 33).toBeGreaterThan(2 ** 192);
  });

  it('rejects any single-character change through the checksum', () => {
    const key = generateSgKey();
    fc.assert(
      fc.property(fc.integer({ min: 3, max: key.length - 1 }), fc.constantFrom(...'0123456789abcXYZ'), (i, c) => {
        fc.pre(key[i] !== c);
        expect(isWellFormedSgKey(key.slice(0, i) + c + key.slice(i + 1))).toBe(false);
      }),
    );
  });

  it('hashes with the pepper so equal keys under different peppers differ', () => {
    const key = generateSgKey();
    expect(hashSgKey(new Uint8Array(32), key)).not.toBe(hashSgKey(new Uint8Array(32).fill(1), key));
    expect(hashSgKey(new Uint8Array(32), key)).not.toContain(key);
  });
});
