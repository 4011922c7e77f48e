/**
 * Byte helpers shared by every envelope: boundary assertions that name the field, hex and UTF-8
 * codecs that reject malformed input, constant-time comparison, and the length-prefixed framing
 * used to build AADs. Pure functions; never log their inputs (they are often secrets).
 */
import { bytesToHex, concatBytes, hexToBytes } from '@noble/hashes/utils.js';
import { ProtocolError } from './errors.ts';

/** Asserts `value` is a Uint8Array (optionally of an exact length) and returns it typed. */
export function abytes(value: unknown, length: number | undefined, field: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new ProtocolError('envelope_malformed', `${field} must be a Uint8Array`);
  }
  if (length !== undefined && value.length !== length) {
    throw new ProtocolError('envelope_malformed', `${field} must be ${length} bytes, got ${value.length}`);
  }
  return value;
}

/** Asserts a non-empty string of at most `max` UTF-8 bytes. */
export function astring(value: unknown, field: string, max = 255): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ProtocolError('envelope_malformed', `${field} must be a non-empty string`);
  }
  if (utf8(value).length > max) {
    throw new ProtocolError('envelope_malformed', `${field} must be at most ${max} bytes`);
  }
  return value;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

const HEX_RE = /^(?:[0-9a-f]{2})*$/i;

export const toHex: (bytes: Uint8Array) => string = bytesToHex;

/** Strict hex decoding: even length, hex digits only. Browser-safe (no Buffer). */
export function fromHex(hex: string, field = 'hex'): Uint8Array {
  if (typeof hex !== 'string' || !HEX_RE.test(hex)) {
    throw new ProtocolError('envelope_malformed', `${field} must be an even-length hex string`);
  }
  return hexToBytes(hex);
}

/** Concatenation, every part checked to be bytes (noble's). */
export { concatBytes };

/** Constant-time equality for secrets: the time depends only on the lengths (noble's). */
export { equalBytes } from '@noble/ciphers/utils.js';

/** u16 big-endian length ‖ bytes: unambiguous framing for AAD fields. */
export function lengthPrefixed(bytes: Uint8Array): Uint8Array {
  if (bytes.length > 0xffff) throw new ProtocolError('envelope_malformed', 'field longer than 65535 bytes');
  const out = new Uint8Array(2 + bytes.length);
  out[0] = bytes.length >>> 8;
  out[1] = bytes.length & 0xff;
  out.set(bytes, 2);
  return out;
}

/** Builds an AAD: domain label, then each field length-prefixed, so no two field lists collide. */
export function frameFields(label: string, fields: Array<string | Uint8Array>): Uint8Array {
  return concatBytes(
    lengthPrefixed(utf8(label)),
    ...fields.map((f) => lengthPrefixed(typeof f === 'string' ? utf8(f) : f)),
  );
}
