/**
 * Share envelope (SPEC.md §3): HPKE base mode (RFC 9180 §5.1.1) with
 * DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305 — suite (0x0020, 0x0001, 0x0003).
 * Used twice: the owner's CLI seals each Shamir share to a shareholder's identity key
 * (purpose `enroll`), and a shareholder seals a share to the enclave's ephemeral key taken from
 * an attestation document (purpose `release`, binding the shareholder's challenge nonce).
 * Never log plaintexts or private keys.
 */
import { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { Chacha20Poly1305 } from '@hpke/chacha20poly1305';

import { x25519 } from '@noble/curves/ed25519.js';
import { abytes, astring, concatBytes, frameFields } from './bytes.ts';
import { ProtocolError } from './errors.ts';

export const SHARE_ENVELOPE_VERSION = 0x01;
export const X25519_KEY_LENGTH = 32;
/** RFC 9180 `info`: names the application and version so keys cannot be confused across uses. */
export const SHARE_ENVELOPE_INFO = new TextEncoder().encode('securegate/share-envelope/v1');

export type SharePurpose = 'enroll' | 'release';

export interface ShareContext {
  purpose: SharePurpose;
  connectionId: string;
  shareholderId: string;
  /** The shareholder's single-use challenge nonce; required for `release`, absent for `enroll`. */
  nonce?: Uint8Array;
}

export interface X25519KeyPair {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

let suite: CipherSuite | undefined;
/** The one HPKE suite of envelope version 1. Exposed for the RFC 9180 vector test. */
export function hpkeSuite(): CipherSuite {
  suite ??= new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Chacha20Poly1305() });
  return suite;
}

export function generateX25519KeyPair(): X25519KeyPair {
  const privateKey = x25519.utils.randomSecretKey();
  return { privateKey, publicKey: x25519.getPublicKey(privateKey) };
}

export function x25519PublicKey(privateKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(abytes(privateKey, X25519_KEY_LENGTH, 'privateKey'));
}

/** AAD = frame("securegate/share", [purpose, connectionId, shareholderId, nonce-or-empty]). */
export function shareEnvelopeAad(context: ShareContext): Uint8Array {
  if (context.purpose !== 'enroll' && context.purpose !== 'release') {
    throw new ProtocolError('envelope_malformed', 'purpose must be enroll or release');
  }
  astring(context.connectionId, 'connectionId', 128);
  astring(context.shareholderId, 'shareholderId', 128);
  if (context.purpose === 'release') {
    abytes(context.nonce, undefined, 'nonce');
    if (context.nonce!.length < 16 || context.nonce!.length > 512) {
      throw new ProtocolError('envelope_malformed', 'release nonce must be 16..512 bytes');
    }
  } else if (context.nonce !== undefined) {
    throw new ProtocolError('envelope_malformed', 'enroll envelopes carry no nonce');
  }
  return frameFields('securegate/share', [
    context.purpose,
    context.connectionId,
    context.shareholderId,
    context.nonce ?? new Uint8Array(0),
  ]);
}

/** Seals `plaintext` to `recipientPublicKey`: version(1) ‖ enc(32) ‖ ciphertext ‖ tag(16). */
export async function sealShareEnvelope(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  context: ShareContext,
): Promise<Uint8Array> {
  abytes(recipientPublicKey, X25519_KEY_LENGTH, 'recipientPublicKey');
  abytes(plaintext, undefined, 'plaintext');
  const aad = shareEnvelopeAad(context);
  const s = hpkeSuite();
  let recipient: CryptoKey;
  try {
    recipient = await s.kem.importKey('raw', recipientPublicKey.slice().buffer, true);
  } catch (cause) {
    throw new ProtocolError('envelope_malformed', 'recipientPublicKey is not a valid X25519 key', { cause });
  }
  const { enc, ct } = await s.seal(
    { recipientPublicKey: recipient, info: SHARE_ENVELOPE_INFO },
    plaintext.slice().buffer,
    aad.slice().buffer,
  );
  return concatBytes(Uint8Array.of(SHARE_ENVELOPE_VERSION), new Uint8Array(enc), new Uint8Array(ct));
}

/**
 * A long-lived recipient key (a shareholder's identity, the enclave's ephemeral key) imported once
 * as a WebCrypto key pair: opening with it skips the per-call import and public-key derivation
 * (about half the cost of an open).
 */
export interface ShareRecipient {
  readonly keyPair: CryptoKeyPair;
}

export async function shareRecipient(privateKey: Uint8Array): Promise<ShareRecipient> {
  abytes(privateKey, X25519_KEY_LENGTH, 'privateKey');
  const s = hpkeSuite();
  const [secret, pub] = await Promise.all([
    s.kem.importKey('raw', privateKey.slice().buffer, false),
    s.kem.importKey('raw', x25519PublicKey(privateKey).slice().buffer, true),
  ]);
  return { keyPair: { privateKey: secret, publicKey: pub } };
}

export async function openShareEnvelope(
  recipient: Uint8Array | ShareRecipient,
  envelope: Uint8Array,
  context: ShareContext,
): Promise<Uint8Array> {
  if (recipient instanceof Uint8Array) abytes(recipient, X25519_KEY_LENGTH, 'recipientPrivateKey');
  abytes(envelope, undefined, 'envelope');
  if (envelope.length < 1 + X25519_KEY_LENGTH + 16) {
    throw new ProtocolError('envelope_malformed', 'share envelope too short');
  }
  if (envelope[0] !== SHARE_ENVELOPE_VERSION) {
    throw new ProtocolError('envelope_version_unsupported', `share envelope version ${envelope[0]} is not supported`);
  }
  const aad = shareEnvelopeAad(context);
  const s = hpkeSuite();
  const enc = envelope.slice(1, 1 + X25519_KEY_LENGTH);
  const ciphertext = envelope.slice(1 + X25519_KEY_LENGTH);
  try {
    const recipientKey = recipient instanceof Uint8Array ? await s.kem.importKey('raw', recipient.slice().buffer, false) : recipient.keyPair;
    const opened = await s.open(
      { recipientKey, enc: enc.buffer, info: SHARE_ENVELOPE_INFO },
      ciphertext.buffer,
      aad.slice().buffer,
    );
    return new Uint8Array(opened);
  } catch (cause) {
    throw new ProtocolError('envelope_auth_failed', 'share envelope did not authenticate', { cause });
  }
}
