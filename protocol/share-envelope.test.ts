import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromHex, toHex } from './bytes.ts';
import {
  generateX25519KeyPair,
  hpkeSuite,
  openShareEnvelope,
  sealShareEnvelope,
  shareRecipient,
  type ShareContext,
} from './share-envelope.ts';

// RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, mode_base,
// values as published in https://www.rfc-editor.org/rfc/rfc9180.txt (sequence number 0).
const A21 = {
  info: '4f6465206f6e2061204772656369616e2055726e',
  ikmE: '909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b',
  pkEm: '1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a',
  ikmR: '1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df',
  skRm: '8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb',
  pkRm: '4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a',
  enc: '1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a',
  pt: '4265617574792069732074727574682c20747275746820626561757479',
  aad: '436f756e742d30',
  ct: '1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28',
};

const buf = (hex: string) => fromHex(hex).slice().buffer;

describe('HPKE suite used by share envelopes', () => {
  it('derives the RFC 9180 A.2.1 recipient key pair from ikmR', async () => {
    const suite = hpkeSuite();
    const pair = await suite.kem.deriveKeyPair(buf(A21.ikmR));
    expect(toHex(new Uint8Array(await suite.kem.serializePublicKey(pair.publicKey)))).toBe(A21.pkRm);
    expect(toHex(new Uint8Array(await suite.kem.serializePrivateKey(pair.privateKey)))).toBe(A21.skRm);
  });

  it('reproduces the RFC 9180 A.2.1 enc and sequence-0 ciphertext', async () => {
    const suite = hpkeSuite();
    const recipientPublicKey = await suite.kem.importKey('raw', buf(A21.pkRm), true);
    const sender = await suite.createSenderContext({ recipientPublicKey, info: buf(A21.info), ekm: buf(A21.ikmE) });
    expect(toHex(new Uint8Array(sender.enc))).toBe(A21.enc);
    const ct = await sender.seal(buf(A21.pt), buf(A21.aad));
    expect(toHex(new Uint8Array(ct))).toBe(A21.ct);
  });

  it('opens the RFC 9180 A.2.1 ciphertext with skRm', async () => {
    const suite = hpkeSuite();
    const recipientKey = await suite.kem.importKey('raw', buf(A21.skRm), false);
    const pt = await suite.open({ recipientKey, enc: buf(A21.enc), info: buf(A21.info) }, buf(A21.ct), buf(A21.aad));
    expect(toHex(new Uint8Array(pt))).toBe(A21.pt);
  });
});

describe('share envelope', () => {
  const enroll: ShareContext = { purpose: 'enroll', connectionId: 'conn_1', shareholderId: 'sh-a' };

  it('round-trips arbitrary plaintexts and contexts', async () => {
    const pair = generateX25519KeyPair();
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.option(fc.uint8Array({ minLength: 16, maxLength: 64 }), { nil: undefined }),
        async (pt, connectionId, shareholderId, nonce) => {
          const ctx: ShareContext = nonce
            ? { purpose: 'release', connectionId, shareholderId, nonce }
            : { purpose: 'enroll', connectionId, shareholderId };
          const env = await sealShareEnvelope(pair.publicKey, pt, ctx);
          expect(await openShareEnvelope(pair.privateKey, env, ctx)).toEqual(pt);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('refuses an envelope whose any byte was flipped', async () => {
    const pair = generateX25519KeyPair();
    const env = await sealShareEnvelope(pair.publicKey, new Uint8Array([1, 2, 3, 4]), enroll);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: env.length - 1 }), fc.integer({ min: 1, max: 255 }), async (i, x) => {
        const bad = env.slice();
        bad[i]! ^= x;
        await expect(openShareEnvelope(pair.privateKey, bad, enroll)).rejects.toMatchObject({
          code: i === 0 ? 'envelope_version_unsupported' : 'envelope_auth_failed',
        });
      }),
      { numRuns: 60 },
    );
  });

  it('refuses to open under a different connection, shareholder, purpose or nonce', async () => {
    const pair = generateX25519KeyPair();
    const nonce = new Uint8Array(32).fill(7);
    const release: ShareContext = { purpose: 'release', connectionId: 'c', shareholderId: 's', nonce };
    const env = await sealShareEnvelope(pair.publicKey, new Uint8Array([9]), release);
    const variants: ShareContext[] = [
      { ...release, connectionId: 'c2' },
      { ...release, shareholderId: 's2' },
      { ...release, nonce: new Uint8Array(32).fill(8) },
      { purpose: 'enroll', connectionId: 'c', shareholderId: 's' },
    ];
    for (const v of variants) {
      await expect(openShareEnvelope(pair.privateKey, env, v)).rejects.toMatchObject({ code: 'envelope_auth_failed' });
    }
  });

  it('refuses to open with another recipient key', async () => {
    const a = generateX25519KeyPair();
    const b = generateX25519KeyPair();
    const env = await sealShareEnvelope(a.publicKey, new Uint8Array([1]), enroll);
    await expect(openShareEnvelope(b.privateKey, env, enroll)).rejects.toMatchObject({ code: 'envelope_auth_failed' });
  });

  it('opens with a once-imported recipient exactly what the raw key opens, and refuses the same', async () => {
    const pair = generateX25519KeyPair();
    const recipient = await shareRecipient(pair.privateKey);
    const other = await shareRecipient(generateX25519KeyPair().privateKey);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.uint8Array({ minLength: 16, maxLength: 64 }), async (pt, nonce) => {
        const ctx: ShareContext = { purpose: 'release', connectionId: 'c', shareholderId: 's', nonce };
        const env = await sealShareEnvelope(pair.publicKey, pt, ctx);
        expect(await openShareEnvelope(recipient, env, ctx)).toEqual(await openShareEnvelope(pair.privateKey, env, ctx));
        await expect(openShareEnvelope(recipient, env, { ...ctx, connectionId: 'c2' })).rejects.toMatchObject({ code: 'envelope_auth_failed' });
        await expect(openShareEnvelope(other, env, ctx)).rejects.toMatchObject({ code: 'envelope_auth_failed' });
      }),
      { numRuns: 20 },
    );
  });

  it('requires a nonce for release envelopes and none for enroll', async () => {
    const pair = generateX25519KeyPair();
    await expect(
      sealShareEnvelope(pair.publicKey, new Uint8Array([1]), { purpose: 'release', connectionId: 'c', shareholderId: 's' }),
    ).rejects.toMatchObject({ code: 'envelope_malformed' });
    await expect(
      sealShareEnvelope(pair.publicKey, new Uint8Array([1]), { ...enroll, nonce: new Uint8Array(16) }),
    ).rejects.toMatchObject({ code: 'envelope_malformed' });
  });
});
