/**
 * Sealing a share envelope (SPEC.md §3): owners seal each share to a shareholder at enrollment,
 * shareholders seal releases to the enclave. The enclave only opens envelopes (share-envelope.ts,
 * which defines the format both use). Never log plaintexts or private keys.
 */
import { abytes, concatBytes } from './bytes.ts';
import { ProtocolError } from './errors.ts';
import {
  hpkeSuite,
  SHARE_ENVELOPE_INFO,
  SHARE_ENVELOPE_VERSION_AUTH,
  shareEnvelopeAad,
  shareEnvelopeVersion,
  shareRecipient,
  X25519_KEY_LENGTH,
  type ShareContext,
  type ShareRecipient,
} from './share-envelope.ts';

/**
 * Seals `plaintext` to `recipientPublicKey`: version(1) ‖ enc(32) ‖ ciphertext ‖ tag(16).
 * `sender` (the shareholder's identity key, raw or imported once) is required for `release`,
 * which is sealed in HPKE auth mode; `enroll` takes none.
 */
export async function sealShareEnvelope(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  context: ShareContext,
  sender?: Uint8Array | ShareRecipient,
): Promise<Uint8Array> {
  abytes(recipientPublicKey, X25519_KEY_LENGTH, 'recipientPublicKey');
  abytes(plaintext, undefined, 'plaintext');
  const aad = shareEnvelopeAad(context);
  const version = shareEnvelopeVersion(context.purpose);
  if ((version === SHARE_ENVELOPE_VERSION_AUTH) !== (sender !== undefined)) {
    throw new ProtocolError('envelope_malformed', context.purpose === 'release' ? 'release envelopes need the sender (shareholder identity) key' : 'enroll envelopes take no sender key');
  }
  const s = hpkeSuite();
  let recipient: CryptoKey;
  try {
    recipient = await s.kem.importKey('raw', recipientPublicKey.slice().buffer, true);
  } catch (cause) {
    throw new ProtocolError('envelope_malformed', 'recipientPublicKey is not a valid X25519 key', { cause });
  }
  const senderKey = sender === undefined ? undefined : sender instanceof Uint8Array ? (await shareRecipient(sender)).keyPair : sender.keyPair;
  const { enc, ct } = await s.seal(
    { recipientPublicKey: recipient, info: SHARE_ENVELOPE_INFO, ...(senderKey ? { senderKey } : {}) },
    plaintext.slice().buffer,
    aad.slice().buffer,
  );
  return concatBytes(Uint8Array.of(version), new Uint8Array(enc), new Uint8Array(ct));
}
