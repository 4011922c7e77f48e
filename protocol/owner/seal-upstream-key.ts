/**
 * Sealing an upstream key into its record (SPEC.md §1), on the owner's machine at onboarding. The
 * enclave only opens records (`openUpstreamKey` in ../sealed-record.ts, which defines the format
 * and the AAD both use).
 */
import { gcm } from '@noble/ciphers/aes.js';
import { abytes, concatBytes } from '../bytes.ts';
import { ProtocolError } from '../errors.ts';
import { DEK_LENGTH, SEALED_RECORD_NONCE_LENGTH, sealedRecordAad, sealedRecordVersion, type KeyBinding, type RandomBytes } from '../sealed-record.ts';

/** Seals `upstreamKey` under `dek`: version(1) ‖ nonce(12) ‖ ciphertext ‖ tag(16). */
export function sealUpstreamKey(
  upstreamKey: Uint8Array,
  dek: Uint8Array,
  binding: KeyBinding,
  random: RandomBytes,
): Uint8Array {
  abytes(upstreamKey, undefined, 'upstreamKey');
  if (upstreamKey.length === 0 || upstreamKey.length > 8192) {
    throw new ProtocolError('envelope_malformed', 'upstreamKey must be 1..8192 bytes');
  }
  abytes(dek, DEK_LENGTH, 'dek');
  const nonce = abytes(random(SEALED_RECORD_NONCE_LENGTH), SEALED_RECORD_NONCE_LENGTH, 'nonce');
  const sealed = gcm(dek, nonce, sealedRecordAad(binding)).encrypt(upstreamKey);
  return concatBytes(Uint8Array.of(sealedRecordVersion(binding)), nonce, sealed);
}
