/**
 * The enclave's usage-receipt key (protocol/usage-receipt.ts): Ed25519, made at start, bound to
 * the attestation through the document's user_data, never leaving the process. The runtime's
 * native Ed25519 signs (a receipt per connection per collection, lease receipts, heads): ~30x faster than Ed25519 in JS, and the
 * private key stays in a native key object, never in the JS heap.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import type { ReceiptSigner } from '../protocol/usage-receipt.ts';

export function generateReceiptSigner(): ReceiptSigner {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  return { publicKey: new Uint8Array(raw), sign: (message) => new Uint8Array(sign(null, message, privateKey)) };
}
