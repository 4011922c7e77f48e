/**
 * Sealed upstream key record (SPEC.md §1): AES-256-GCM under a random 256-bit data key (DEK),
 * with the connection's binding (id, provider, pinned origin, auth scheme, format version) in
 * the AAD, so the enclave can refuse to use a key anywhere the owner did not pin it.
 * Pure: randomness is injected. Never log `upstreamKey`, `dek` or the opened result.
 */
import { gcm } from '@noble/ciphers/aes.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { abytes, astring, fromHex, frameFields, toHex } from './bytes.ts';
import { ProtocolError } from './errors.ts';

export const SEALED_RECORD_VERSION = 0x01;
/** Version 0x02 adds the any-API request allow-list to the AAD. */
export const SEALED_RECORD_VERSION_ALLOW = 0x02;
/**
 * Version 0x03 binds the owner-signed connection policy (its `connectionPolicySha256`) into the
 * AAD, so a host cannot pair the record with a laxer policy or drop it (SPEC.md §1, §9).
 */
export const SEALED_RECORD_VERSION_POLICY = 0x03;
/**
 * Version 0x04 binds the shareholder set the owner pinned (ids, identity keys, threshold — its
 * `shareholderSetSha256`), so the enclave authenticates releases against the owner's set rather
 * than its own configuration, and a host that swaps the set gets a record that does not open
 * (SPEC.md §1, §3). Allow-list and policy hash are carried as in 0x03 ("" when absent).
 */
export const SEALED_RECORD_VERSION_SHAREHOLDERS = 0x04;
const KNOWN_VERSIONS = new Set([SEALED_RECORD_VERSION, SEALED_RECORD_VERSION_ALLOW, SEALED_RECORD_VERSION_POLICY, SEALED_RECORD_VERSION_SHAREHOLDERS]);
/** The AES-GCM nonce of a sealed record (`sealUpstreamKey` in owner/seal-upstream-key.ts makes it). */
export const SEALED_RECORD_NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
export const DEK_LENGTH = 32;

/**
 * How the enclave presents the key upstream: `bearer` (Authorization: Bearer), `x-api-key`,
 * `api-key` (Azure), `basic` (Authorization: Basic base64(key) — e.g. Stripe's "sk_…:"),
 * `header:<name>` (any named header), `query:<name>` (a query parameter).
 */
export type AuthScheme = string;
export const FIXED_AUTH_SCHEMES = ['bearer', 'x-api-key', 'api-key', 'basic'] as const;
const FORBIDDEN_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'cookie', 'te', 'upgrade', 'trailer', 'keep-alive']);
export const AUTH_SCHEME_PATTERN = '^(bearer|x-api-key|api-key|basic|header:[A-Za-z0-9-]{1,64}|query:[A-Za-z0-9_.-]{1,64})$';

export function isAuthScheme(value: unknown): value is AuthScheme {
  if (typeof value !== 'string' || !new RegExp(AUTH_SCHEME_PATTERN).test(value)) return false;
  return !(value.startsWith('header:') && FORBIDDEN_HEADERS.has(value.slice(7).toLowerCase()));
}

/** What the AAD binds: the key may be used only for this connection, provider, origin and scheme. */
export interface KeyBinding {
  connectionId: string;
  provider: string;
  /** Canonical origin, e.g. `https://api.openai.com` (see `canonicalOrigin`). */
  origin: string;
  authScheme: AuthScheme;
  /**
   * Any-API connections only: the canonical request allow-list (`canonicalAllowList`). Bound into
   * the AAD (record version 0x02) so a host cannot widen what the enclave will call.
   */
  allow?: string;
  /**
   * Records sealed with a connection policy (version 0x03): hex SHA-256 of the owner-signed policy
   * (`connectionPolicySha256`). The enclave enforces that policy and no other.
   */
  policySha256?: string;
  /**
   * Records sealed with their shareholder set (version 0x04): `shareholderSetSha256` of the set
   * and threshold the owner split the DEK to. The enclave asks and authenticates only that set.
   */
  shareholderSetSha256?: string;
}

/** One member of a record's shareholder set: its id and X25519 identity key (64 lower-case hex digits). */
export interface ShareholderSetMember {
  id: string;
  publicKey: string;
}

const SHAREHOLDER_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * The canonical shareholder set: members checked (id pattern, 32-byte hex key, ids unique,
 * 2 ≤ t ≤ n ≤ 255), reduced to `{ id, publicKey }` and sorted by id. Throws `envelope_malformed`.
 */
export function canonicalShareholderSet(members: readonly ShareholderSetMember[], threshold: number): ShareholderSetMember[] {
  if (!Array.isArray(members) || members.length < 2 || members.length > 255) {
    throw new ProtocolError('envelope_malformed', 'a shareholder set has 2..255 members');
  }
  if (!Number.isInteger(threshold) || threshold < 2 || threshold > members.length) {
    throw new ProtocolError('envelope_malformed', 'threshold must be 2..n for the shareholder set');
  }
  const set = members.map((m, i) => {
    if (m === null || typeof m !== 'object' || typeof m.id !== 'string' || !SHAREHOLDER_ID.test(m.id)) throw new ProtocolError('envelope_malformed', `shareholder set [${i}].id is not a shareholder id`);
    if (typeof m.publicKey !== 'string' || !/^[0-9a-f]{64}$/.test(m.publicKey)) throw new ProtocolError('envelope_malformed', `shareholder set [${i}].publicKey must be 64 lower-case hex digits`);
    return { id: m.id, publicKey: m.publicKey };
  });
  // Ids are ASCII, so code-unit order is byte order.
  set.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (let i = 1; i < set.length; i++) {
    if (set[i]!.id === set[i - 1]!.id) throw new ProtocolError('envelope_malformed', `shareholder ${set[i]!.id} is listed twice`);
  }
  return set;
}

/**
 * hex(SHA-256(frame("securegate/shareholder-set", threshold(1), id1, pk1(32), id2, pk2(32), …)))
 * over the canonical set (sorted by id): what a version 0x04 record binds (SPEC.md §1).
 */
export function shareholderSetSha256(members: readonly ShareholderSetMember[], threshold: number): string {
  const set = canonicalShareholderSet(members, threshold);
  return toHex(sha256(frameFields('securegate/shareholder-set', [Uint8Array.of(threshold), ...set.flatMap((m) => [m.id, fromHex(m.publicKey, 'publicKey')])])));
}

export type RandomBytes = (length: number) => Uint8Array;

/**
 * Returns the canonical form of an origin (scheme, lower-case host, port only when not the
 * default), refusing anything with a path, query, fragment or credentials: binding a key to
 * `https://api.openai.com/` and `https://API.openai.com` must mean the same thing.
 */
export function canonicalOrigin(origin: string): string {
  astring(origin, 'origin', 2048);
  let url: URL;
  try {
    url = new URL(origin);
  } catch (cause) {
    throw new ProtocolError('envelope_malformed', 'origin is not a URL', { cause });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ProtocolError('envelope_malformed', 'origin must use https (or http for loopback development)');
  }
  if (url.username || url.password || url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) {
    throw new ProtocolError('envelope_malformed', 'origin must be scheme://host[:port] with nothing after it');
  }
  return url.origin;
}

function checkBinding(binding: KeyBinding): KeyBinding {
  astring(binding.connectionId, 'connectionId', 128);
  astring(binding.provider, 'provider', 64);
  if (!isAuthScheme(binding.authScheme)) {
    throw new ProtocolError('envelope_malformed', 'authScheme must be bearer, x-api-key, api-key, basic, header:<name> or query:<name>');
  }
  if (binding.allow !== undefined && (typeof binding.allow !== 'string' || binding.allow.length > 16_384)) {
    throw new ProtocolError('envelope_malformed', 'allow must be a canonical allow-list string');
  }
  if (binding.policySha256 !== undefined && (typeof binding.policySha256 !== 'string' || !/^[0-9a-f]{64}$/.test(binding.policySha256))) {
    throw new ProtocolError('envelope_malformed', 'policySha256 must be 64 lower-case hex digits');
  }
  if (binding.shareholderSetSha256 !== undefined && (typeof binding.shareholderSetSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(binding.shareholderSetSha256))) {
    throw new ProtocolError('envelope_malformed', 'shareholderSetSha256 must be 64 lower-case hex digits');
  }
  if (canonicalOrigin(binding.origin) !== binding.origin) {
    throw new ProtocolError('envelope_malformed', 'origin must be given in canonical form');
  }
  return binding;
}

/** The record version a binding seals to: 0x04 with a shareholder set, else 0x03 with a policy, else 0x02 with an allow-list, else 0x01. */
export function sealedRecordVersion(binding: KeyBinding): number {
  if (binding.shareholderSetSha256 !== undefined) return SEALED_RECORD_VERSION_SHAREHOLDERS;
  if (binding.policySha256 !== undefined) return SEALED_RECORD_VERSION_POLICY;
  return binding.allow === undefined ? SEALED_RECORD_VERSION : SEALED_RECORD_VERSION_ALLOW;
}

/**
 * AAD = frame("securegate/sealed-key", [version, connectionId, provider, origin, authScheme])
 * for version 0x01, with the allow-list appended for version 0x02; version 0x03 appends
 * allow-or-empty and the policy hash; version 0x04 allow-or-empty, policy-hash-or-empty and the
 * shareholder set hash.
 */
export function sealedRecordAad(binding: KeyBinding): Uint8Array {
  checkBinding(binding);
  const version = sealedRecordVersion(binding);
  const tail =
    version === SEALED_RECORD_VERSION_SHAREHOLDERS
      ? [binding.allow ?? '', binding.policySha256 ?? '', binding.shareholderSetSha256!]
      : version === SEALED_RECORD_VERSION_POLICY
        ? [binding.allow ?? '', binding.policySha256!]
        : binding.allow === undefined
          ? []
          : [binding.allow];
  return frameFields('securegate/sealed-key', [Uint8Array.of(version), binding.connectionId, binding.provider, binding.origin, binding.authScheme, ...tail]);
}

/**
 * Opens a sealed record. Throws `envelope_auth_failed` if the DEK is wrong (for example a bad
 * Shamir combine), any byte was changed, or the binding differs from the one sealed.
 */
export function openUpstreamKey(record: Uint8Array, dek: Uint8Array, binding: KeyBinding): Uint8Array {
  abytes(record, undefined, 'record');
  abytes(dek, DEK_LENGTH, 'dek');
  if (record.length < 1 + SEALED_RECORD_NONCE_LENGTH + TAG_LENGTH + 1) {
    throw new ProtocolError('envelope_malformed', 'sealed record too short');
  }
  if (!KNOWN_VERSIONS.has(record[0]!)) {
    throw new ProtocolError('envelope_version_unsupported', `sealed record version ${record[0]} is not supported`);
  }
  // A record opens only under the binding kind it was sealed with: a host cannot drop the policy,
  // the allow-list or the shareholder set by presenting a binding of an older version.
  if (record[0] !== sealedRecordVersion(binding)) {
    throw new ProtocolError('envelope_auth_failed', 'sealed key record did not authenticate');
  }
  const nonce = record.subarray(1, 1 + SEALED_RECORD_NONCE_LENGTH);
  try {
    return gcm(dek, nonce, sealedRecordAad(binding)).decrypt(record.subarray(1 + SEALED_RECORD_NONCE_LENGTH));
  } catch (cause) {
    throw new ProtocolError('envelope_auth_failed', 'sealed key record did not authenticate', { cause });
  }
}
