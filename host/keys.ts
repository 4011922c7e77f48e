/**
 * SG_ proxy keys: 192 random bits in base62 plus a CRC32 checksum (so scanners can recognise a
 * leaked key offline, like GitHub's token format), stored only as HMAC-SHA256 under a server
 * pepper. The plaintext key is shown once at creation and never stored or logged.
 */
import { createHash, createHmac, createSecretKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { crc32 } from 'node:zlib';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_LENGTH = 33; // ceil(192 / log2(62))
const CHECK_LENGTH = 6;
export const SG_KEY_PATTERN = /^SG_[0-9A-Za-z]{39}$/;

function base62(value: bigint, length: number): string {
  let out = '';
  while (value > 0n) {
    out = ALPHABET[Number(value % 62n)] + out;
    value /= 62n;
  }
  return out.padStart(length, '0');
}

function checksum(body: string): string {
  return base62(BigInt(crc32(body) >>> 0), CHECK_LENGTH);
}

export function generateSgKey(random: (n: number) => Buffer = randomBytes): string {
  const body = base62(BigInt(`0x${random(24).toString('hex')}`), BODY_LENGTH);
  return `SG_${body}${checksum(body)}`;
}

/** Format and checksum check: cheap, offline, and rejects typos before any lookup. */
export function isWellFormedSgKey(key: string): boolean {
  if (!SG_KEY_PATTERN.test(key)) return false;
  const body = key.slice(3, 3 + BODY_LENGTH);
  return key.slice(3 + BODY_LENGTH) === checksum(body);
}

/** The pepper as a KeyObject, made once per pepper (importing raw key bytes costs on every call). */
const pepperKeys = new WeakMap<Uint8Array, KeyObject>();

export function hashSgKey(pepper: Uint8Array, key: string): string {
  let secret = pepperKeys.get(pepper);
  if (!secret) {
    secret = createSecretKey(pepper);
    pepperKeys.set(pepper, secret);
  }
  return createHmac('sha256', secret).update(key).digest('hex');
}

/** The token of an `Authorization: Bearer <token>` header value, if that is what it is. */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  return typeof header === 'string' && /^Bearer\s+/i.test(header) ? header.replace(/^Bearer\s+/i, '').trim() : undefined;
}

/** The visible prefix users see in lists ("SG_abc…"), enough to tell keys apart. */
export function keyHint(key: string): string {
  return `${key.slice(0, 7)}…${key.slice(-4)}`;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A random id with a prefix (92 random bits from Node's buffered UUID entropy: cheap per call). */
export function newId(prefix: string): string {
  const u = randomUUID().replaceAll('-', '');
  // Skip the version nibble (index 12); the rest up to the variant nibble is random.
  return `${prefix}_${u.slice(0, 12)}${u.slice(13, 16)}${u.slice(17, 25)}`;
}
