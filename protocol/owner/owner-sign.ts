/**
 * Signing an owner message (SPEC.md §4) with the owner's Ed25519 key: on the owner's machine (CLI,
 * dashboard) and by the release engineer's tooling. The enclave only verifies
 * (protocol/owner-signature.ts), so its image does not contain this.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { abytes, toHex } from '../bytes.ts';
import { signedBytes, type OwnerMessage, type SignedOwnerMessage } from '../owner-signature.ts';

export function signOwnerMessage(secretKey: Uint8Array, message: OwnerMessage): SignedOwnerMessage {
  abytes(secretKey, 32, 'secretKey');
  const signature = ed25519.sign(signedBytes(message), secretKey);
  return { message, publicKey: toHex(ed25519.getPublicKey(secretKey)), signature: toHex(signature) };
}
