/**
 * Share envelope (SPEC.md §3): HPKE with DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 /
 * ChaCha20-Poly1305 — suite (0x0020, 0x0001, 0x0003).
 * Used twice: the owner's CLI seals each Shamir share to a shareholder's identity key
 * (purpose `enroll`, base mode RFC 9180 §5.1.1, version 0x01 — the owner's signature over the
 * envelope's hash authenticates it), and a shareholder seals a share to the enclave's ephemeral
 * key taken from an attestation document (purpose `release`, binding the shareholder's challenge
 * nonce) in **auth mode** (RFC 9180 §5.1.3, version 0x02) with its identity key as the sender key:
 * only the holder of that shareholder's private key can make a release the enclave opens, so a
 * man in the middle cannot forge "a share from sh-1" and get the honest sh-1 blamed.
 * Sealing (owners and shareholders, never the enclave) is in share-envelope-seal.ts.
 * Never log plaintexts or private keys.
 */
import { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { Chacha20Poly1305 } from '@hpke/chacha20poly1305';

import { x25519 } from '@noble/curves/ed25519.js';
import { abytes, astring, frameFields } from './bytes.ts';
import { ProtocolError } from './errors.ts';

export const SHARE_ENVELOPE_VERSION = 0x01;
/** Release envelopes: HPKE mode_auth, sender = the shareholder's identity key. */
export const SHARE_ENVELOPE_VERSION_AUTH = 0x02;
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
  /**
   * `release` only: hex SHA-256 of the owner-signed connection-policy update the shareholder sends
   * with this lease (SPEC.md §9.2). Appended to the AAD when present, so a host that strips or
   * swaps the update makes the share fail to open.
   */
  leasePolicySha256?: string;
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

/** AAD = frame("securegate/share", [purpose, connectionId, shareholderId, nonce-or-empty, leasePolicySha256?]). */
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
  } else if (context.nonce !== undefined || context.leasePolicySha256 !== undefined) {
    throw new ProtocolError('envelope_malformed', 'enroll envelopes carry no nonce and no lease policy');
  }
  if (context.leasePolicySha256 !== undefined && !/^[0-9a-f]{64}$/.test(context.leasePolicySha256)) {
    throw new ProtocolError('envelope_malformed', 'leasePolicySha256 must be 64 hex digits');
  }
  return frameFields('securegate/share', [
    context.purpose,
    context.connectionId,
    context.shareholderId,
    context.nonce ?? new Uint8Array(0),
    // A fifth field only when present: releases without an update keep their exact AAD.
    ...(context.leasePolicySha256 !== undefined ? [context.leasePolicySha256] : []),
  ]);
}

/**
 * The envelope version a purpose requires: enroll = base mode (0x01), release = auth mode (0x02).
 * A release in base mode is unauthenticated — anyone could have made it — and is refused.
 */
export function shareEnvelopeVersion(purpose: SharePurpose): number {
  return purpose === 'release' ? SHARE_ENVELOPE_VERSION_AUTH : SHARE_ENVELOPE_VERSION;
}

/** A shareholder's identity public key imported once for opening its (auth mode) releases. */
export interface ShareSender {
  readonly publicKey: CryptoKey;
}

export async function shareSender(publicKey: Uint8Array): Promise<ShareSender> {
  abytes(publicKey, X25519_KEY_LENGTH, 'senderPublicKey');
  try {
    return { publicKey: await hpkeSuite().kem.importKey('raw', publicKey.slice().buffer, true) };
  } catch (cause) {
    throw new ProtocolError('envelope_malformed', 'senderPublicKey is not a valid X25519 key', { cause });
  }
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

/**
 * Opens an envelope. For `release`, `sender` is the identity key of the shareholder the release
 * must come from (pinned by the enclave's measured configuration, never taken from the reply):
 * the envelope must be version 0x02 (auth mode) and authenticate as that sender, or it fails with
 * `envelope_auth_failed` — a base-mode release, or anything not made with that shareholder's
 * private key, for this nonce, connection and shareholder id.
 */
export async function openShareEnvelope(
  recipient: Uint8Array | ShareRecipient,
  envelope: Uint8Array,
  context: ShareContext,
  sender?: Uint8Array | ShareSender,
): Promise<Uint8Array> {
  if (recipient instanceof Uint8Array) abytes(recipient, X25519_KEY_LENGTH, 'recipientPrivateKey');
  abytes(envelope, undefined, 'envelope');
  if (envelope.length < 1 + X25519_KEY_LENGTH + 16) {
    throw new ProtocolError('envelope_malformed', 'share envelope too short');
  }
  const version = envelope[0];
  if (version !== SHARE_ENVELOPE_VERSION && version !== SHARE_ENVELOPE_VERSION_AUTH) {
    throw new ProtocolError('envelope_version_unsupported', `share envelope version ${envelope[0]} is not supported`);
  }
  const aad = shareEnvelopeAad(context);
  const want = shareEnvelopeVersion(context.purpose);
  if (version !== want) {
    // A base-mode release could come from anyone; an auth-mode enroll is not what owners make.
    throw new ProtocolError('envelope_auth_failed', context.purpose === 'release' ? 'release envelope is not authenticated by its shareholder (HPKE base mode)' : 'enroll envelopes are HPKE base mode (version 1)');
  }
  if ((want === SHARE_ENVELOPE_VERSION_AUTH) !== (sender !== undefined)) {
    throw new ProtocolError('envelope_malformed', context.purpose === 'release' ? 'opening a release needs the shareholder identity key it must come from' : 'enroll envelopes take no sender key');
  }
  const s = hpkeSuite();
  const senderPublicKey = sender === undefined ? undefined : sender instanceof Uint8Array ? (await shareSender(sender)).publicKey : sender.publicKey;
  const enc = envelope.slice(1, 1 + X25519_KEY_LENGTH);
  const ciphertext = envelope.slice(1 + X25519_KEY_LENGTH);
  try {
    const recipientKey = recipient instanceof Uint8Array ? await s.kem.importKey('raw', recipient.slice().buffer, false) : recipient.keyPair;
    const opened = await s.open(
      { recipientKey, enc: enc.buffer, info: SHARE_ENVELOPE_INFO, ...(senderPublicKey ? { senderPublicKey } : {}) },
      ciphertext.buffer,
      aad.slice().buffer,
    );
    return new Uint8Array(opened);
  } catch (cause) {
    throw new ProtocolError('envelope_auth_failed', 'share envelope did not authenticate', { cause });
  }
}
