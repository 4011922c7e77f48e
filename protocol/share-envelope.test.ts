import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromHex, toHex } from './bytes.ts';
import {
  generateX25519KeyPair,
  hpkeSuite,
  openShareEnvelope,
  SHARE_ENVELOPE_INFO,
  SHARE_ENVELOPE_VERSION_AUTH,
  shareEnvelopeAad,
  shareRecipient,
  shareSender,
  type ShareContext,
} from './share-envelope.ts';
import { sealShareEnvelope } from './share-envelope-seal.ts';

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

// RFC 9180 Appendix A.2.3: the same suite in mode_auth (the mode of release envelopes), values as
// published in the RFC (cfrg/draft-irtf-cfrg-hpke, draft-irtf-cfrg-hpke.md, "Auth Setup
// Information" of DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305; sequence number 0).
const A23 = {
  info: '4f6465206f6e2061204772656369616e2055726e',
  ikmE: '938d3daa5a8904540bc24f48ae90eed3f4f7f11839560597b55e7c9598c996c0',
  ikmR: '64835d5ee64aa7aad57c6f2e4f758f7696617f8829e70bc9ac7a5ef95d1c756c',
  pkRm: '1a478716d63cb2e16786ee93004486dc151e988b34b475043d3e0175bdb01c44',
  skRm: '3ca22a6d1cda1bb9480949ec5329d3bf0b080ca4c45879c95eddb55c70b80b82',
  ikmS: '9d8f94537d5a3ddef71234c0baedfad4ca6861634d0b94c3007fed557ad17df6',
  pkSm: 'f0f4f9e96c54aeed3f323de8534fffd7e0577e4ce269896716bcb95643c8712b',
  skSm: '2def0cb58ffcf83d1062dd085c8aceca7f4c0c3fd05912d847b61f3e54121f05',
  enc: 'f7674cc8cd7baa5872d1f33dbaffe3314239f6197ddf5ded1746760bfc847e0e',
  pt: '4265617574792069732074727574682c20747275746820626561757479',
  aad: '436f756e742d30',
  ct: 'ab1a13c9d4f01a87ec3440dbd756e2677bd2ecf9df0ce7ed73869b98e00c09be111cb9fdf077347aeb88e61bdf',
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

describe('HPKE auth mode used by release envelopes (RFC 9180 A.2.3)', () => {
  it('derives the A.2.3 sender key pair from ikmS', async () => {
    const suite = hpkeSuite();
    const pair = await suite.kem.deriveKeyPair(buf(A23.ikmS));
    expect(toHex(new Uint8Array(await suite.kem.serializePublicKey(pair.publicKey)))).toBe(A23.pkSm);
    expect(toHex(new Uint8Array(await suite.kem.serializePrivateKey(pair.privateKey)))).toBe(A23.skSm);
  });

  it('reproduces the A.2.3 enc and sequence-0 ciphertext with the sender key', async () => {
    const suite = hpkeSuite();
    const recipientPublicKey = await suite.kem.importKey('raw', buf(A23.pkRm), true);
    const senderKey = await suite.kem.deriveKeyPair(buf(A23.ikmS));
    const sender = await suite.createSenderContext({ recipientPublicKey, senderKey, info: buf(A23.info), ekm: buf(A23.ikmE) });
    expect(toHex(new Uint8Array(sender.enc))).toBe(A23.enc);
    expect(toHex(new Uint8Array(await sender.seal(buf(A23.pt), buf(A23.aad))))).toBe(A23.ct);
  });

  it('opens the A.2.3 ciphertext only with the sender public key pkSm', async () => {
    const suite = hpkeSuite();
    const recipientKey = await suite.kem.importKey('raw', buf(A23.skRm), false);
    const senderPublicKey = await suite.kem.importKey('raw', buf(A23.pkSm), true);
    const pt = await suite.open({ recipientKey, enc: buf(A23.enc), info: buf(A23.info), senderPublicKey }, buf(A23.ct), buf(A23.aad));
    expect(toHex(new Uint8Array(pt))).toBe(A23.pt);
    const stranger = await suite.kem.importKey('raw', buf(A23.pkRm), true);
    await expect(suite.open({ recipientKey, enc: buf(A23.enc), info: buf(A23.info), senderPublicKey: stranger }, buf(A23.ct), buf(A23.aad))).rejects.toThrow();
  });
});

describe('authenticated release envelopes', () => {
  const nonce = new Uint8Array(32).fill(7);
  const release: ShareContext = { purpose: 'release', connectionId: 'c', shareholderId: 'sh-1', nonce };

  it('opens a release only as coming from the shareholder whose identity key sealed it', async () => {
    const enclave = generateX25519KeyPair();
    const sh1 = generateX25519KeyPair();
    const env = await sealShareEnvelope(enclave.publicKey, new Uint8Array([42]), release, sh1.privateKey);
    expect(env[0]).toBe(SHARE_ENVELOPE_VERSION_AUTH);
    expect(await openShareEnvelope(enclave.privateKey, env, release, sh1.publicKey)).toEqual(new Uint8Array([42]));
    expect(await openShareEnvelope(enclave.privateKey, env, release, await shareSender(sh1.publicKey))).toEqual(new Uint8Array([42]));
  });

  it('refuses a release forged by a man in the middle with any other key ("a share from sh-1")', async () => {
    const enclave = generateX25519KeyPair();
    const sh1 = generateX25519KeyPair();
    const mitm = generateX25519KeyPair();
    const forged = await sealShareEnvelope(enclave.publicKey, new Uint8Array([1]), release, mitm.privateKey);
    await expect(openShareEnvelope(enclave.privateKey, forged, release, sh1.publicKey)).rejects.toMatchObject({ code: 'envelope_auth_failed' });
  });

  it('refuses an unauthenticated (base mode, version 1) release even when it would decrypt', async () => {
    const enclave = generateX25519KeyPair();
    const sh1 = generateX25519KeyPair();
    // What a base-mode sender would produce: seal as enroll-style base mode, relabel as a release.
    const s = hpkeSuite();
    const { enc, ct } = await s.seal(
      { recipientPublicKey: await s.kem.importKey('raw', enclave.publicKey.slice().buffer, true), info: SHARE_ENVELOPE_INFO },
      new Uint8Array([1]).buffer,
      shareEnvelopeAad(release).slice().buffer,
    );
    const base = new Uint8Array([0x01, ...new Uint8Array(enc), ...new Uint8Array(ct)]);
    await expect(openShareEnvelope(enclave.privateKey, base, release, sh1.publicKey)).rejects.toMatchObject({ code: 'envelope_auth_failed' });
  });

  it('will not seal or open a release without the shareholder key, nor an enroll with one', async () => {
    const pair = generateX25519KeyPair();
    await expect(sealShareEnvelope(pair.publicKey, new Uint8Array([1]), release)).rejects.toMatchObject({ code: 'envelope_malformed' });
    const env = await sealShareEnvelope(pair.publicKey, new Uint8Array([1]), release, pair.privateKey);
    await expect(openShareEnvelope(pair.privateKey, env, release)).rejects.toMatchObject({ code: 'envelope_malformed' });
    const enrollCtx: ShareContext = { purpose: 'enroll', connectionId: 'c', shareholderId: 's' };
    await expect(sealShareEnvelope(pair.publicKey, new Uint8Array([1]), enrollCtx, pair.privateKey)).rejects.toMatchObject({ code: 'envelope_malformed' });
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
          const sender = nonce ? pair.privateKey : undefined;
          const env = await sealShareEnvelope(pair.publicKey, pt, ctx, sender);
          expect(await openShareEnvelope(pair.privateKey, env, ctx, nonce ? pair.publicKey : undefined)).toEqual(pt);
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
          // Byte 0 turned into the other known version (0x02, auth mode) is a wrong mode, not an unknown version.
          code: i === 0 && bad[0] !== SHARE_ENVELOPE_VERSION_AUTH ? 'envelope_version_unsupported' : 'envelope_auth_failed',
        });
      }),
      { numRuns: 60 },
    );
  });

  it('refuses to open under a different connection, shareholder, purpose or nonce', async () => {
    const pair = generateX25519KeyPair();
    const nonce = new Uint8Array(32).fill(7);
    const release: ShareContext = { purpose: 'release', connectionId: 'c', shareholderId: 's', nonce };
    const env = await sealShareEnvelope(pair.publicKey, new Uint8Array([9]), release, pair.privateKey);
    const variants: ShareContext[] = [
      { ...release, connectionId: 'c2' },
      { ...release, shareholderId: 's2' },
      { ...release, nonce: new Uint8Array(32).fill(8) },
      { purpose: 'enroll', connectionId: 'c', shareholderId: 's' },
    ];
    for (const v of variants) {
      await expect(openShareEnvelope(pair.privateKey, env, v, v.purpose === 'release' ? pair.publicKey : undefined)).rejects.toMatchObject({ code: 'envelope_auth_failed' });
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
        const env = await sealShareEnvelope(pair.publicKey, pt, ctx, recipient);
        expect(await openShareEnvelope(recipient, env, ctx, pair.publicKey)).toEqual(await openShareEnvelope(pair.privateKey, env, ctx, pair.publicKey));
        await expect(openShareEnvelope(recipient, env, { ...ctx, connectionId: 'c2' }, pair.publicKey)).rejects.toMatchObject({ code: 'envelope_auth_failed' });
        await expect(openShareEnvelope(other, env, ctx, pair.publicKey)).rejects.toMatchObject({ code: 'envelope_auth_failed' });
      }),
      { numRuns: 20 },
    );
  });

  it('requires a nonce for release envelopes and none for enroll', async () => {
    const pair = generateX25519KeyPair();
    await expect(
      sealShareEnvelope(pair.publicKey, new Uint8Array([1]), { purpose: 'release', connectionId: 'c', shareholderId: 's' }, pair.privateKey),
    ).rejects.toMatchObject({ code: 'envelope_malformed' });
    await expect(
      sealShareEnvelope(pair.publicKey, new Uint8Array([1]), { ...enroll, nonce: new Uint8Array(16) }),
    ).rejects.toMatchObject({ code: 'envelope_malformed' });
  });
});
