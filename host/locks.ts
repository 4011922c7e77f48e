/**
 * Lock decisions (docs/architecture.md §4.2), as plain functions over a key, its connection and the classified
 * request, in this order: kill switch / revoked / expired / suspended → request signature → IP →
 * city → device → scope → model allow-list (after alias resolution; a model the host could not
 * determine is refused on a model-locked key) → project scope.
 * Velocity and first-use binding have side effects and live in the proxy; this stays pure.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { cityAllowed, type Location } from './geo.ts';
import { MODEL_UNKNOWN } from './request/classified.ts';
import { scopeGrants } from './request/scopes.ts';
import type { ConnectionRecord, KeyRecord } from './store.ts';

export const LOCK_ERRORS = {
  key_revoked: { status: 401, type: 'authentication_error', message: 'This SecureGate key was revoked.' },
  key_killed: { status: 401, type: 'authentication_error', message: 'This SecureGate key was switched off by its owner (kill switch).' },
  key_expired: { status: 401, type: 'authentication_error', message: 'This SecureGate key expired after a period without use.' },
  key_suspended: { status: 429, type: 'rate_limit_error', message: 'This SecureGate key is suspended after unusual activity.' },
  signature_invalid: { status: 401, type: 'authentication_error', message: 'The request signature is missing or invalid.' },
  signature_replayed: { status: 401, type: 'authentication_error', message: 'This request signature was already used.' },
  ip_mismatch: { status: 403, type: 'permission_error', message: 'This SecureGate key is locked to another IP address.' },
  city_not_allowed: { status: 403, type: 'permission_error', message: 'Requests from this location are not allowed for this key.' },
  device_mismatch: { status: 403, type: 'permission_error', message: 'This SecureGate key is bound to another device.' },
  model_not_allowed: { status: 403, type: 'permission_error', message: 'This model is not allowed for this key.' },
  scope_not_granted: { status: 403, type: 'permission_error', message: 'This key is not allowed to use this endpoint.' },
  project_scope: { status: 403, type: 'permission_error', message: 'This key cannot use a connection of another project.' },
} as const;

export type LockCode = keyof typeof LOCK_ERRORS;

export interface LockRefusal {
  code: LockCode;
  message: string;
  /** Seconds, for `retry-after` (suspension). */
  retryAfter?: number;
}

export interface RequestFacts {
  now: number;
  clientIp: string;
  location: Location | null;
  deviceFingerprint: string | undefined;
  /**
   * The model as resolved through the project's aliases; undefined when the endpoint names none;
   * MODEL_UNKNOWN when it should name one and the host could not tell which.
   */
  model: string | undefined | typeof MODEL_UNKNOWN;
  /** The scope atom the classified endpoint needs (`inference:write`, `files:delete`, …). */
  scope: string;
  /** Further atoms for stored data the body names by id (`files:read` for a `file_id`, …). */
  extraScopes?: readonly string[];
  /** Models the request's tools run besides its own; MODEL_UNKNOWN when a tool runs one it does not name. */
  toolModels?: ReadonlyArray<string | typeof MODEL_UNKNOWN>;
  allowUnknownLocation: boolean;
}

export function deviceHash(salt: string, fingerprint: string): string {
  return createHmac('sha256', Buffer.from(salt, 'hex')).update(fingerprint).digest('hex');
}

function refuse(code: LockCode, detail?: string, retryAfter?: number): LockRefusal {
  return { code, message: detail ? `${LOCK_ERRORS[code].message} ${detail}` : LOCK_ERRORS[code].message, ...(retryAfter ? { retryAfter } : {}) };
}

/** Status locks: checked before anything else, and before the request body is read. */
export function checkKeyStatus(key: KeyRecord, now: number): LockRefusal | undefined {
  if (key.status === 'revoked') return refuse('key_revoked');
  if (key.status === 'killed') return refuse('key_killed');
  if (key.expiresAt !== null && key.expiresAt <= now) {
    return { code: 'key_expired', message: `This SecureGate key expired on ${new Date(key.expiresAt).toISOString().replace('.000Z', 'Z')} (its expiry date); ask its owner for a new key or a later expiry.` };
  }
  if (key.status === 'expired') return refuse('key_expired');
  if (key.inactiveExpiryMs !== null && (key.lastUsedAt ?? key.createdAt) + key.inactiveExpiryMs < now) return refuse('key_expired');
  if (key.suspendedUntil !== null && key.suspendedUntil > now) {
    return refuse('key_suspended', 'Ask the key owner to run `securegate keys unsuspend`.', Math.ceil((key.suspendedUntil - now) / 1000));
  }
  return undefined;
}

/** IP, city, device, model and project locks (signature is checked by the caller, which owns the replay cache). */
export function checkRequestLocks(key: KeyRecord, connection: ConnectionRecord, facts: RequestFacts): LockRefusal | undefined {
  if (key.boundIp !== null && key.boundIp !== facts.clientIp) return refuse('ip_mismatch');
  if (key.allowedCities.length > 0) {
    if (!facts.location?.city) {
      if (!facts.allowUnknownLocation) return refuse('city_not_allowed', 'The location of this address is unknown.');
    } else if (!cityAllowed(facts.location, key.allowedCities)) {
      return refuse('city_not_allowed');
    }
  }
  if (key.autoLock.includes('city') && key.boundCity !== null && cityLabel(facts.location) !== key.boundCity) {
    return refuse('city_not_allowed', `This key locked itself to ${key.boundCity} on first use.`);
  }
  if (key.deviceHash !== null) {
    const presented = facts.deviceFingerprint;
    if (!presented || presented.length > 256) return refuse('device_mismatch', 'Send the x-device-fingerprint header (`securegate env`).');
    if (!deviceMatches(key, presented)) return refuse('device_mismatch');
  }
  for (const atom of [facts.scope, ...(facts.extraScopes ?? [])]) {
    if (!scopeGrants(key.scopes, atom)) {
      const why = atom === facts.scope ? '' : ' to read the stored data this request names by id';
      return refuse('scope_not_granted', `It needs the scope ${atom}${why}; this key has ${key.scopes.join(', ') || 'none'} (\`securegate keys update --scopes\`).`);
    }
  }
  if (key.allowedModels.length > 0 && facts.model === MODEL_UNKNOWN) {
    return refuse('model_not_allowed', `The gateway could not tell which model this request uses, and this key may call only ${key.allowedModels.join(', ')}. Name the model in the request.`);
  }
  if (key.allowedModels.length > 0 && typeof facts.model === 'string' && !key.allowedModels.includes(facts.model)) {
    return refuse('model_not_allowed', `Allowed: ${key.allowedModels.join(', ')}.`);
  }
  if (key.allowedModels.length > 0) {
    for (const m of facts.toolModels ?? []) {
      if (m === MODEL_UNKNOWN) return refuse('model_not_allowed', `A tool in this request runs a model it does not name; this key may call only ${key.allowedModels.join(', ')}.`);
      if (!key.allowedModels.includes(m)) return refuse('model_not_allowed', `A tool in this request runs ${m}. Allowed: ${key.allowedModels.join(', ')}.`);
    }
  }
  if (connection.projectId !== key.projectId) return refuse('project_scope');
  return undefined;
}

/** "City, CC" of a location, the form auto-locked keys store; null when the city is unknown. */
export function cityLabel(location: Location | null): string | null {
  return location?.city ? `${location.city}, ${location.country ?? '??'}` : null;
}

/** Resolves a requested model through the project's alias registry. */
export function resolveModel<T extends string | undefined | typeof MODEL_UNKNOWN>(requested: T, aliases: Record<string, string>): T | string {
  if (typeof requested !== 'string') return requested;
  return Object.hasOwn(aliases, requested) ? aliases[requested]! : requested;
}

/** Parses `7d`, `12h`, `30m`, `90s` (or plain milliseconds) into milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)\s*(ms|s|m|h|d|w)?$/.exec(text.trim());
  if (!m) throw new Error(`duration must look like 7d, 12h, 30m or 90s, got ${text}`);
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[(m[2] ?? 'ms') as 'ms'];
  return n * unit;
}

/** Whether `fingerprint` is the one bound to `key` (constant-time over the salted hashes). */
export function deviceMatches(key: Pick<KeyRecord, 'deviceSalt' | 'deviceHash'>, fingerprint: string): boolean {
  if (key.deviceHash === null) return false;
  const got = Buffer.from(deviceHash(key.deviceSalt ?? '', fingerprint), 'hex');
  const want = Buffer.from(key.deviceHash, 'hex');
  return got.length === want.length && timingSafeEqual(got, want);
}
