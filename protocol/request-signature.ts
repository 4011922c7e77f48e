/**
 * Request signatures (opt-in per key; once on, required). A client signs
 *   ts ‖ "\n" ‖ METHOD ‖ "\n" ‖ path-with-query ‖ "\n" ‖ hex(SHA-256(body))
 * with HMAC-SHA256 under the key's signing secret and sends `x-sg-timestamp: <unix seconds>` and
 * `x-sg-signature: <hex>`. The gateway accepts ±300 s and each signature once (replay cache
 * shared by all instances). Pure and browser-safe: this is also the client helper.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { equalBytes, fromHex, toHex, utf8 } from './bytes.ts';

export const SIGNATURE_WINDOW_SECONDS = 300;
export const SIGNATURE_HEADERS = { timestamp: 'x-sg-timestamp', signature: 'x-sg-signature' } as const;

export function signatureBase(timestamp: number, method: string, pathWithQuery: string, body: Uint8Array): Uint8Array {
  return utf8(`${timestamp}\n${method.toUpperCase()}\n${pathWithQuery}\n${toHex(sha256(body))}`);
}

/** Returns the headers to add to a request. `secret` is the hex signing secret shown at enable. */
export function signRequest(secret: string, method: string, pathWithQuery: string, body: Uint8Array, now = Date.now()): Record<string, string> {
  const ts = Math.floor(now / 1000);
  const mac = hmac(sha256, fromHex(secret, 'secret'), signatureBase(ts, method, pathWithQuery, body));
  return { [SIGNATURE_HEADERS.timestamp]: String(ts), [SIGNATURE_HEADERS.signature]: toHex(mac) };
}

export type SignatureCheck = { ok: true; signature: string; expiresAt: number } | { ok: false; reason: string };

/** Verifies timestamp window and MAC (constant-time). Replay is the caller's job (shared cache). */
export function verifyRequestSignature(
  secret: string,
  method: string,
  pathWithQuery: string,
  body: Uint8Array,
  timestampHeader: string | undefined,
  signatureHeader: string | undefined,
  now = Date.now(),
): SignatureCheck {
  if (!timestampHeader || !signatureHeader) return { ok: false, reason: 'x-sg-timestamp and x-sg-signature are required for this key' };
  if (!/^\d{1,12}$/.test(timestampHeader)) return { ok: false, reason: 'x-sg-timestamp must be unix seconds' };
  const ts = Number(timestampHeader);
  if (Math.abs(now / 1000 - ts) > SIGNATURE_WINDOW_SECONDS) return { ok: false, reason: 'x-sg-timestamp is outside the ±300 s window' };
  if (!/^[0-9a-f]{64}$/i.test(signatureHeader)) return { ok: false, reason: 'x-sg-signature must be 64 hex digits' };
  const expected = hmac(sha256, fromHex(secret, 'secret'), signatureBase(ts, method, pathWithQuery, body));
  if (!equalBytes(expected, fromHex(signatureHeader.toLowerCase()))) return { ok: false, reason: 'signature does not match the request' };
  return { ok: true, signature: signatureHeader.toLowerCase(), expiresAt: (ts + SIGNATURE_WINDOW_SECONDS + 1) * 1000 };
}
