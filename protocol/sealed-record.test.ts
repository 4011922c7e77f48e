import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { utf8 } from './bytes.ts';
import { canonicalOrigin, openUpstreamKey, type KeyBinding } from './sealed-record.ts';
import { sealUpstreamKey } from './owner/seal-upstream-key.ts';

const random = (n: number) => new Uint8Array(randomBytes(n));
const binding: KeyBinding = {
  connectionId: 'conn_01',
  provider: 'openai',
  origin: 'https://api.openai.com',
  authScheme: 'bearer',
};

describe('sealed upstream key record', () => {
  it('round-trips any key under its binding', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), (key) => {
        const dek = random(32);
        expect(openUpstreamKey(sealUpstreamKey(key, dek, binding, random), dek, binding)).toEqual(key);
      }),
    );
  });

  it('fails when any byte of version, nonce or ciphertext is flipped', () => {
    const dek = random(32);
    const record = sealUpstreamKey(utf8('sk-test-123'), dek, binding, random);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: record.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const bad = record.slice();
        bad[i]! ^= x;
        expect(() => openUpstreamKey(bad, dek, binding)).toThrow(
          // A version byte flipped to another known version (0x01..0x04) parses, then fails authentication.
          expect.objectContaining({ code: i === 0 && ![1, 2, 3, 4].includes(record[0]! ^ x) ? 'envelope_version_unsupported' : 'envelope_auth_failed' }),
        );
      }),
    );
  });

  it('fails when any AAD field differs from the sealed binding', () => {
    const dek = random(32);
    const record = sealUpstreamKey(utf8('sk-test-123'), dek, binding, random);
    const others: KeyBinding[] = [
      { ...binding, connectionId: 'conn_02' },
      { ...binding, provider: 'anthropic' },
      { ...binding, origin: 'https://evil.example' },
      { ...binding, origin: 'https://api.openai.com:8443' },
      { ...binding, authScheme: 'x-api-key' },
    ];
    for (const other of others) {
      expect(() => openUpstreamKey(record, dek, other)).toThrow(expect.objectContaining({ code: 'envelope_auth_failed' }));
    }
  });

  it('fails with a wrong data key', () => {
    const record = sealUpstreamKey(utf8('sk'), random(32), binding, random);
    expect(() => openUpstreamKey(record, random(32), binding)).toThrow(expect.objectContaining({ code: 'envelope_auth_failed' }));
  });

  it('canonicalises origins and refuses paths, credentials and odd schemes', () => {
    expect(canonicalOrigin('https://API.OpenAI.com:443/')).toBe('https://api.openai.com');
    expect(canonicalOrigin('http://127.0.0.1:9000')).toBe('http://127.0.0.1:9000');
    for (const bad of ['https://api.openai.com/v1', 'https://u:p@x.com', 'ftp://x.com', 'https://x.com?a=1', 'not a url']) {
      expect(() => canonicalOrigin(bad)).toThrow(expect.objectContaining({ code: 'envelope_malformed' }));
    }
    expect(() => sealUpstreamKey(utf8('k'), random(32), { ...binding, origin: 'https://API.openai.com' }, random)).toThrow(
      expect.objectContaining({ code: 'envelope_malformed' }),
    );
  });

  it('never includes the key in its error messages', () => {
    const key = 'sk-live-SECRET-VALUE-123';
    const dek = random(32);
    const record = sealUpstreamKey(utf8(key), dek, binding, random);
    try {
      openUpstreamKey(record, random(32), binding);
      expect.unreachable();
    } catch (error) {
      expect(String(error)).not.toContain(key);
      expect(JSON.stringify(error)).not.toContain(key);
    }
  });
});
