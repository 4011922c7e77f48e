/**
 * Making an owner's Ed25519 signing key (SPEC.md §4) and its public key: on the owner's machine
 * (`securegate connect`, the dashboard's enrolment) and for release signing keys. The enclave only
 * verifies owner signatures (`owner-signature.ts`), so its image does not contain this.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { abytes } from '../bytes.ts';

export interface OwnerKeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export function generateOwnerKeyPair(): OwnerKeyPair {
  const secretKey = ed25519.utils.randomSecretKey();
  return { secretKey, publicKey: ed25519.getPublicKey(secretKey) };
}

export function ownerPublicKey(secretKey: Uint8Array): Uint8Array {
  return ed25519.getPublicKey(abytes(secretKey, 32, 'secretKey'));
}
