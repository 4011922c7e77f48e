/**
 * Owner-signed connection policy (SPEC.md §9): what a connection may be used for — operations
 * (endpoint kind and access, the host's own classification), optionally which models — and a
 * daily ceiling (requests, tokens, micro-dollars at prices the owner signs). Its hash is sealed
 * into the key record's AAD (record version 0x03), so the enclave, which enforces it, can tell a
 * host-substituted policy from the owner's. Pure: no clock, no I/O; decisions are plain functions.
 * What the enclave runs: parsing, verification, the hash, operations and the ceiling. The lease
 * math owners and shareholders use is in `lease-limits.ts`; signing and prices, on the owner's
 * side, in `owner/connection-policy-sign.ts`.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { astring, concatBytes, toHex, utf8 } from './bytes.ts';
import { ProtocolError } from './errors.ts';
import { canonicalJson, verifyOwnerMessage, type SignedOwnerMessage } from './owner-signature.ts';
import { fromHex } from './bytes.ts';
import { ACCESS, ENDPOINT_KINDS, type Access, type EndpointKind } from './providers/kinds.ts';

export const CONNECTION_POLICY_DOMAIN = 'securegate/connection-policy/v1\n';
/** What a policy grants when the owner names nothing else: inference, every access. */
export const DEFAULT_POLICY_OPERATIONS = ['inference'] as const;
/** Tokens charged for a relayed answer whose usage cannot be read (when none is signed). */
export const DEFAULT_UNMETERED_TOKENS = 16_384;
const DAY_MS = 86_400_000;

/** Micro-dollars (1e-6 USD) per million tokens: integers only, so the signed JSON has no floats. */
export interface ModelPrice {
  inputMicroUsdPerMTok: number;
  outputMicroUsdPerMTok: number;
}

export interface DailyCeiling {
  requests?: number;
  tokens?: number;
  /** Needs `prices` for every model the connection may call; anything unpriced is refused. */
  microUsd?: number;
}

/**
 * What one DEK reconstruction (a lease: t shareholder releases) may serve before the enclave drops
 * the DEK and must obtain a new lease. Shareholders count leases per connection per UTC day.
 */
export interface LeaseTerms {
  requests?: number;
  tokens?: number;
  ttlMs?: number;
}

export interface ConnectionPolicy {
  connectionId: string;
  issuedAt: number;
  /** `"<kind>"` (every access) or `"<kind>:<access>"`, kinds and access from `providers/kinds.ts`. */
  operations: string[];
  /** When present, only these models (exact ids as the request names them). */
  models?: string[];
  ceiling: DailyCeiling;
  prices?: Record<string, ModelPrice>;
  lease?: LeaseTerms;
  /** Tokens charged for an answer whose usage the enclave cannot read. */
  unmeteredTokens: number;
  /**
   * Policy updates (SPEC.md §9.1): absent or 1 for the policy sealed at `connect`; each update the
   * owner relays through the shareholders carries a larger one. Verifiers refuse any version not
   * above the newest they hold (rollback).
   */
  version?: number;
  /** n shareholders, threshold t: what a shareholder needs to recompute its lease limit k from an update. */
  quorum?: { n: number; t: number };
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function fail(message: string): never {
  throw new ProtocolError('envelope_malformed', `connection policy: ${message}`);
}

function checkOperation(op: unknown): string {
  if (typeof op !== 'string') fail('operations must be strings');
  const [kind, access, extra] = op.split(':');
  if (extra !== undefined || !ENDPOINT_KINDS.includes(kind as EndpointKind)) fail(`unknown operation ${op}`);
  if (access !== undefined && !ACCESS.includes(access as Access)) fail(`unknown access in ${op}`);
  return op;
}

/** The integer fields `keys` of the object `value` that are present, each at least `min`. */
function counts<K extends string>(value: unknown, what: string, keys: readonly K[], min: 0 | 1): Partial<Record<K, number>> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(`${what} must be an object`);
  const out: Partial<Record<K, number>> = {};
  for (const k of keys) {
    const v = (value as Record<string, unknown>)[k];
    if (v === undefined) continue;
    if (!isCount(v) || v < min) fail(`${what}.${k} must be a ${min === 1 ? 'positive' : 'non-negative'} integer`);
    out[k] = v;
  }
  return out;
}

/** Validates the signed message's fields (not the signature) into a typed policy. */
export function parseConnectionPolicy(message: Record<string, unknown>): ConnectionPolicy {
  if (message.type !== 'connection_policy') fail('type must be connection_policy');
  astring(message.connectionId, 'connectionId', 128);
  if (!isCount(message.issuedAt)) fail('issuedAt must be unix milliseconds');
  if (!Array.isArray(message.operations) || message.operations.length === 0 || message.operations.length > 64) fail('operations must be a non-empty list');
  const operations = message.operations.map(checkOperation);
  let models: string[] | undefined;
  if (message.models !== undefined) {
    if (!Array.isArray(message.models) || message.models.length > 1024) fail('models must be a list');
    models = message.models.map((m) => astring(m, 'model', 256));
  }
  const ceiling: DailyCeiling = counts(message.ceiling, 'ceiling', ['requests', 'tokens', 'microUsd'], 0);
  let prices: Record<string, ModelPrice> | undefined;
  if (message.prices !== undefined) {
    if (message.prices === null || typeof message.prices !== 'object' || Array.isArray(message.prices)) fail('prices must be an object');
    prices = {};
    for (const [model, p] of Object.entries(message.prices as Record<string, unknown>)) {
      const q = p as Record<string, unknown> | null;
      if (!q || !isCount(q.inputMicroUsdPerMTok) || !isCount(q.outputMicroUsdPerMTok)) fail(`price of ${model} must give input/output micro-dollars per million tokens`);
      prices[model] = { inputMicroUsdPerMTok: q.inputMicroUsdPerMTok, outputMicroUsdPerMTok: q.outputMicroUsdPerMTok };
    }
  }
  const lease: LeaseTerms | undefined = message.lease === undefined ? undefined : counts(message.lease, 'lease', ['requests', 'tokens', 'ttlMs'], 1);
  const unmetered = message.unmeteredTokens ?? DEFAULT_UNMETERED_TOKENS;
  if (!isCount(unmetered)) fail('unmeteredTokens must be a non-negative integer');
  if (message.version !== undefined && (!isCount(message.version) || message.version < 1)) fail('version must be a positive integer');
  let quorum: { n: number; t: number } | undefined;
  if (message.quorum !== undefined) {
    const q = message.quorum as Record<string, unknown> | null;
    if (!q || typeof q !== 'object' || !isCount(q.n) || !isCount(q.t) || q.t < 2 || q.t > q.n || q.n > 255) fail('quorum must be { n, t } with 2 ≤ t ≤ n ≤ 255');
    quorum = { n: q.n, t: q.t };
  }
  return {
    connectionId: message.connectionId as string,
    issuedAt: message.issuedAt,
    operations,
    ...(models ? { models } : {}),
    ceiling,
    ...(prices ? { prices } : {}),
    ...(lease ? { lease } : {}),
    unmeteredTokens: unmetered,
    ...(message.version !== undefined ? { version: message.version as number } : {}),
    ...(quorum ? { quorum } : {}),
  };
}

/** The version of a policy: 1 when it names none (the policy sealed at `connect`). */
export function policyVersion(policy: Pick<ConnectionPolicy, 'version'>): number {
  return policy.version ?? 1;
}

/**
 * hex SHA-256(utf8(CONNECTION_POLICY_DOMAIN) ‖ utf8(canonical_json({ message, publicKey }))):
 * what the sealed record (version 0x03) binds. The signer's key is inside the hash, so a policy
 * re-signed by anyone else is another policy.
 */
export function connectionPolicySha256(signed: SignedOwnerMessage): string {
  const body = canonicalJson({ message: signed.message, publicKey: signed.publicKey });
  return toHex(sha256(concatBytes(utf8(CONNECTION_POLICY_DOMAIN), utf8(body))));
}

/**
 * The enclave's check: the policy is the one the record binds (`boundSha256` is then proven by
 * the record's GCM tag), signed by the key it names, for this connection. Returns it parsed.
 */
export function verifyConnectionPolicy(signed: SignedOwnerMessage, connectionId: string): { policy: ConnectionPolicy; sha256: string } {
  if (!signed || typeof signed !== 'object' || typeof signed.publicKey !== 'string' || !signed.message || typeof signed.message !== 'object') {
    fail('signed policy must be { message, publicKey, signature }');
  }
  verifyOwnerMessage(signed, fromHex(signed.publicKey, 'publicKey'));
  const policy = parseConnectionPolicy(signed.message);
  if (policy.connectionId !== connectionId) throw new ProtocolError('signature_invalid', 'connection policy was signed for another connection');
  return { policy, sha256: connectionPolicySha256(signed) };
}

/**
 * Checks an owner-signed policy update against the policy the record binds (`base`, already
 * verified): signed by the same owner key (the one inside the sealed record's policy hash), for
 * the same connection, and newer than `newestVersion` (the newest this verifier has accepted).
 * Throws `signature_invalid` (wrong signer or connection) or `policy_rollback` (not newer).
 */
export function verifyPolicyUpdate(
  signed: SignedOwnerMessage,
  base: { signed: SignedOwnerMessage; connectionId: string },
  newestVersion: number,
): { policy: ConnectionPolicy; sha256: string; version: number } {
  if (!signed || typeof signed !== 'object' || signed.publicKey !== base.signed.publicKey) {
    throw new ProtocolError('signature_invalid', 'policy update is not signed by the owner key the sealed record binds');
  }
  const { policy, sha256 } = verifyConnectionPolicy(signed, base.connectionId);
  const version = policyVersion(policy);
  if (version <= newestVersion) throw new ProtocolError('policy_rollback', `policy version ${version} is not newer than version ${newestVersion}`);
  return { policy, sha256, version };
}

/** Why a request falls outside a policy; `undefined` when it is inside. */
export type PolicyRefusal = { code: 'operation'; message: string } | { code: 'model'; message: string };

/**
 * `model`: the model the request names; `undefined` when the endpoint names none (a listing);
 * `null` when it names one that could not be read — refused under a model list or a dollar
 * ceiling, because "could not tell" is a refusal.
 */
export function policyRefusal(policy: ConnectionPolicy, operation: { kind: EndpointKind; access: Access }, model: string | null | undefined): PolicyRefusal | undefined {
  const granted = policy.operations.some((op) => op === operation.kind || op === `${operation.kind}:${operation.access}`);
  if (!granted) return { code: 'operation', message: `${operation.kind}:${operation.access} is not an operation this connection's policy grants` };
  const modelBound = policy.models !== undefined || policy.ceiling.microUsd !== undefined;
  if (model === undefined || !modelBound) return undefined;
  if (model === null) return { code: 'model', message: 'the model of this request cannot be determined, and the policy restricts models' };
  if (policy.models !== undefined && !policy.models.includes(model)) return { code: 'model', message: `model ${model} is not allowed by this connection's policy` };
  if (policy.ceiling.microUsd !== undefined && !(policy.prices && Object.hasOwn(policy.prices, model))) {
    return { code: 'model', message: `model ${model} has no price in this connection's policy, which caps dollars` };
  }
  return undefined;
}

/** The UTC day number of a unix-ms instant: the ceiling's window. */
export function utcDay(ms: number): number {
  return Math.floor(ms / DAY_MS);
}

export interface DayUsage {
  requests: number;
  tokens: number;
  microUsd: number;
}

/** Which ceiling a new request would cross, if any (requests count the new one; tokens and dollars count what was used). */
export function ceilingReached(policy: ConnectionPolicy, used: DayUsage): keyof DailyCeiling | undefined {
  const c = policy.ceiling;
  if (c.requests !== undefined && used.requests + 1 > c.requests) return 'requests';
  if (c.tokens !== undefined && used.tokens >= c.tokens) return 'tokens';
  if (c.microUsd !== undefined && used.microUsd >= c.microUsd) return 'microUsd';
  return undefined;
}

/** Cost in micro-dollars (rounded up) of one answer at the policy's price for `model`; 0 unpriced. */
export function costMicroUsd(policy: ConnectionPolicy, model: string | undefined, usage: { inputTokens: number; outputTokens: number }): number {
  const price = model !== undefined && policy.prices && Object.hasOwn(policy.prices, model) ? policy.prices[model]! : undefined;
  if (!price) return 0;
  return Math.ceil((usage.inputTokens * price.inputMicroUsdPerMTok + usage.outputTokens * price.outputMicroUsdPerMTok) / 1_000_000);
}
