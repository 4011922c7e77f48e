/**
 * Host ↔ enclave RPC (SPEC.md §5): HTTP/1.1 over a stream transport. The host forwards the
 * client's request with the upstream path in the URL and describes the connection in one header;
 * the enclave trusts none of it — the sealed record's AAD decides origin and scheme.
 */
import { ProtocolError } from './errors.ts';
import { isAuthScheme, type AuthScheme, type ShareholderSetMember } from './sealed-record.ts';
import type { SignedOwnerMessage } from './owner-signature.ts';

export const RPC_CONNECTION_HEADER = 'x-sg-connection';
/** Prefix of forwarded requests: `/forward/v1/chat/completions?…`. */
export const RPC_FORWARD_PREFIX = '/forward';
/**
 * `POST` `{ connectionId }`: the enclave drops the connection's cached data key at once, so its next
 * use needs a new lease from the shareholders. The host calls it when a connection is rotated away
 * from. Unauthenticated on purpose: only the host reaches the enclave's socket, and eviction is a
 * denial the host can cause anyway (by not forwarding) — it never widens access (SPEC.md §5).
 */
export const RPC_EVICT_PATH = '/evict';
/** Set on responses the enclave itself produced (not the upstream's), with the error code. */
export const RPC_ENCLAVE_ERROR_HEADER = 'x-sg-enclave-error';

export interface ConnectionDescriptor {
  connectionId: string;
  provider: string;
  origin: string;
  authScheme: AuthScheme;
  /** Base64 of the sealed key record. */
  sealedRecord: string;
  threshold: number;
  /** Any-API connections: the canonical allow-list the record was sealed with. */
  allow?: string;
  /**
   * Connections sealed with a policy (record version 0x03): the owner-signed connection policy
   * (SPEC.md §9). The enclave checks it against the hash the record's AAD binds and enforces it.
   */
  policy?: SignedOwnerMessage;
  /**
   * Records sealed with their shareholder set (version 0x04): the set the owner pinned,
   * `[{ id, publicKey }]`. The enclave asks only these shareholders, authenticates each release
   * against the key listed here, and the record's AAD (its `shareholderSetSha256`, with the
   * threshold) decides whether it is the owner's set (SPEC.md §1, §3, §5).
   */
  shareholders?: ShareholderSetMember[];
}

export function decodeConnectionDescriptor(header: unknown): ConnectionDescriptor {
  if (typeof header !== 'string' || header.length === 0 || header.length > 32_768) {
    throw new ProtocolError('envelope_malformed', `${RPC_CONNECTION_HEADER} header missing or too long`);
  }
  let d: Record<string, unknown>;
  try {
    d = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
  } catch (cause) {
    throw new ProtocolError('envelope_malformed', `${RPC_CONNECTION_HEADER} is not base64url JSON`, { cause });
  }
  const str = (k: string) => {
    if (typeof d[k] !== 'string' || (d[k] as string).length === 0) throw new ProtocolError('envelope_malformed', `connection ${k} missing`);
    return d[k] as string;
  };
  const authScheme = str('authScheme') as AuthScheme;
  if (!isAuthScheme(authScheme)) throw new ProtocolError('envelope_malformed', 'connection authScheme unknown');
  if (d.allow !== undefined && typeof d.allow !== 'string') throw new ProtocolError('envelope_malformed', 'connection allow must be a string');
  const policy = d.policy as SignedOwnerMessage | undefined;
  if (
    policy !== undefined &&
    (policy === null || typeof policy !== 'object' || typeof policy.publicKey !== 'string' || typeof policy.signature !== 'string' || policy.message === null || typeof policy.message !== 'object')
  ) {
    throw new ProtocolError('envelope_malformed', 'connection policy must be a signed owner message');
  }
  const shareholders = d.shareholders as ShareholderSetMember[] | undefined;
  if (
    shareholders !== undefined &&
    (!Array.isArray(shareholders) || shareholders.length > 255 || shareholders.some((m) => m === null || typeof m !== 'object' || typeof m.id !== 'string' || typeof m.publicKey !== 'string'))
  ) {
    throw new ProtocolError('envelope_malformed', 'connection shareholders must be [{ id, publicKey }]');
  }
  const threshold = d.threshold;
  if (typeof threshold !== 'number' || !Number.isInteger(threshold) || threshold < 2 || threshold > 255) {
    throw new ProtocolError('envelope_malformed', 'connection threshold must be 2..255');
  }
  return {
    connectionId: str('connectionId'),
    provider: str('provider'),
    origin: str('origin'),
    authScheme,
    sealedRecord: str('sealedRecord'),
    threshold,
    ...(typeof d.allow === 'string' ? { allow: d.allow } : {}),
    ...(policy !== undefined ? { policy } : {}),
    ...(shareholders !== undefined ? { shareholders: shareholders.map((m) => ({ id: m.id, publicKey: m.publicKey })) } : {}),
  };
}

/** Error codes the enclave returns in `{ "error": { "code" } }`; the host maps them. */
export const ENCLAVE_ERROR_CODES = [
  'shareholders_unavailable',
  'sealed_record_invalid',
  'path_not_allowed',
  'origin_not_allowed',
  'provider_unknown',
  'upstream_unreachable',
  'enclave_not_ready',
  'bad_request',
  /** The descriptor's connection policy does not verify (signature, fields, other connection). */
  'policy_invalid',
  /** The request's operation (endpoint kind:access) is outside the owner-signed policy. */
  'policy_operation_denied',
  /** The request's model is outside the policy (or unknown/unpriced where the policy needs it). */
  'policy_model_denied',
  /** The connection's owner-signed daily ceiling (requests, tokens or dollars) is used up for this UTC day. */
  'policy_ceiling_reached',
  /** Enough shareholders refused a new lease: the owner-signed daily lease limit is spent (SPEC.md §9). */
  'lease_limit_reached',
] as const;
export type EnclaveErrorCode = (typeof ENCLAVE_ERROR_CODES)[number];
