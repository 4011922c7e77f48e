/**
 * Stage 1 of the request path: authenticate. Finds the `SG_` key (Bearer, `x-api-key`,
 * `api-key`, `x-goog-api-key`) by its peppered hash, with its connection, through an in-process
 * cache that every instance drops on a key change (NOTIFY). A database that cannot answer is a
 * 503 `database_unavailable` — never a pass, never a 5xx without a code.
 */
import { HostError } from '../errors.ts';
import { bearerToken, hashSgKey, isWellFormedSgKey } from '../keys.ts';
import type { ConnectionRecord, HostStore, KeyRecord } from '../store.ts';

/** Extracts the SG_ key from `Authorization: Bearer`, `x-api-key`, `api-key` or `x-goog-api-key`. */
export function credentialFrom(headers: Record<string, string | string[] | undefined>): string | undefined {
  const authorization = headers.authorization;
  const bearer = bearerToken(typeof authorization === 'string' ? authorization : undefined);
  if (bearer !== undefined) return bearer;
  for (const name of ['x-api-key', 'api-key', 'x-goog-api-key']) {
    const v = headers[name];
    if (typeof v === 'string' && v.length > 0) return v.trim();
  }
  return undefined;
}

export interface Authenticated {
  key: KeyRecord;
  connection: ConnectionRecord;
}

interface CachedKey extends Authenticated {
  until: number;
}

export class KeyDirectory {
  readonly #store: HostStore;
  readonly #pepper: Uint8Array;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, CachedKey>();

  constructor(store: HostStore, pepper: Uint8Array, ttlMs: number) {
    this.#store = store;
    this.#pepper = pepper;
    this.#ttlMs = ttlMs;
  }

  /** Drops a key (by id) or, with '*', everything: called on every key-change notification. */
  forget(keyId: string): void {
    if (keyId === '*') this.#cache.clear();
    else for (const [hash, entry] of this.#cache) if (entry.key.id === keyId) this.#cache.delete(hash);
  }

  async authenticate(headers: Record<string, string | string[] | undefined>): Promise<Authenticated> {
    const credential = credentialFrom(headers);
    if (!credential || !isWellFormedSgKey(credential)) {
      throw new HostError('invalid_api_key', 'Invalid SecureGate key. Use the SG_… key from `securegate keys create`.');
    }
    const hash = hashSgKey(this.#pepper, credential);
    const cached = this.#cache.get(hash);
    if (cached && cached.until > Date.now()) return cached;
    let key: KeyRecord | undefined;
    let connection: ConnectionRecord | undefined;
    try {
      key = await this.#store.findKeyByHash(hash);
      connection = key ? await this.#store.getConnection(key.connectionId) : undefined;
    } catch {
      throw new HostError('database_unavailable', 'The gateway cannot check keys right now (its database is unavailable); retry shortly.');
    }
    if (!key) throw new HostError('invalid_api_key', 'Invalid SecureGate key.');
    if (!connection) throw new HostError('invalid_api_key', 'This key has no connection.');
    const entry = { key, connection, until: Date.now() + this.#ttlMs };
    this.#cache.set(hash, entry);
    return entry;
  }
}
