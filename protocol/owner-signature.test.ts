import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { generateOwnerKeyPair } from './owner/owner-keys.ts';
import {
  canonicalJson,
  verifyOwnerMessage,
  type OwnerMessage,
} from './owner-signature.ts';
import { signOwnerMessage } from './owner/owner-sign.ts';

const message: OwnerMessage = {
  type: 'policy_update',
  connectionId: 'conn_1',
  issuedAt: 1_700_000_000_000,
  pcrSets: [{ '0': 'aa', '1': 'bb' }],
  maxReleasesPerMinute: 60,
};

describe('canonical JSON (RFC 8785 subset)', () => {
  it('sorts keys and is independent of insertion order', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: 1, y: 2 } })).toBe('{"a":[true,null,"x"],"b":1,"c":{"y":2,"z":1}}');
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer(), fc.boolean())), (obj) => {
        const reversed = Object.fromEntries(Object.entries(obj).reverse());
        expect(canonicalJson(reversed)).toBe(canonicalJson(obj));
        expect(JSON.parse(canonicalJson(obj))).toEqual(obj);
      }),
    );
  });

  it('refuses floats, bigints and class instances', () => {
    for (const bad of [1.5, 10n, new Date(0), { a: Number.NaN }]) {
      expect(() => canonicalJson(bad)).toThrow(expect.objectContaining({ code: 'canonical_encoding_invalid' }));
    }
  });
});

describe('owner signatures', () => {
  it('verifies a message signed by the pinned owner key', () => {
    const owner = generateOwnerKeyPair();
    const signed = signOwnerMessage(owner.secretKey, message);
    expect(verifyOwnerMessage(signed, owner.publicKey)).toEqual(message);
  });

  it('refuses a message whose any field was changed after signing', () => {
    const owner = generateOwnerKeyPair();
    const signed = signOwnerMessage(owner.secretKey, message);
    const tampered: OwnerMessage[] = [
      { ...message, connectionId: 'conn_2' },
      { ...message, type: 'revoke' },
      { ...message, issuedAt: message.issuedAt + 1 },
      { ...message, pcrSets: [{ '0': 'aa', '1': 'bc' }] },
      { ...message, extra: 'x' },
    ];
    for (const m of tampered) {
      expect(() => verifyOwnerMessage({ ...signed, message: m }, owner.publicKey)).toThrow(
        expect.objectContaining({ code: 'signature_invalid' }),
      );
    }
  });

  it('refuses a valid signature by a key other than the pinned owner', () => {
    const owner = generateOwnerKeyPair();
    const attacker = generateOwnerKeyPair();
    const signed = signOwnerMessage(attacker.secretKey, message);
    expect(() => verifyOwnerMessage(signed, owner.publicKey)).toThrow(expect.objectContaining({ code: 'signature_invalid' }));
  });

  it('refuses malformed signatures with a typed error', () => {
    const owner = generateOwnerKeyPair();
    const signed = signOwnerMessage(owner.secretKey, message);
    for (const signature of ['', 'zz', signed.signature.slice(2), signed.signature + '00']) {
      expect(() => verifyOwnerMessage({ ...signed, signature }, owner.publicKey)).toThrow(
        expect.objectContaining({ code: 'signature_invalid' }),
      );
    }
  });
});
