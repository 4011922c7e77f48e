/**
 * Resolves a connection's data key (DEK) for one request: from the in-memory cache (TTL, size
 * bound), or by one reconstruction through the shareholders (share-fanout.ts), at most one per
 * connection at a time (single flight). The DEK, not the key, is cached; the key is opened per
 * request and dropped. Each reconstruction is a lease (SPEC.md §9), numbered so the server can
 * meter what it served; which shareholders a lease asks first rotates per connection, so the
 * releases — which every shareholder counts against the owner's daily limit — spread evenly.
 * A DEK in use is refreshed in the background in the last tenth of its TTL (refresh-ahead).
 * Requests to shareholders and prepared tickets: shareholder-client.ts.
 */
import type { Nsm } from '../attestation/nsm.ts';
import { equalBytes } from '../protocol/bytes.ts';
import { openUpstreamKey, sealedRecordVersion, type KeyBinding, type ShareholderSetMember } from '../protocol/sealed-record.ts';
import type { SignedOwnerMessage } from '../protocol/owner-signature.ts';
import type { X25519KeyPair } from '../protocol/share-envelope.ts';
import { EnclaveError } from './errors.ts';
import type { EgressRoute } from './forward.ts';
import type { EnclaveMetrics } from './metrics.ts';
import { reconstructDek, type FanOut } from './share-fanout.ts';
import { ShareholderClient } from './shareholder-client.ts';
import { parseShareholderEndpoints, type ShareholderEndpoint } from './shareholders.ts';

export interface KeyResolverOptions {
  shareholders: ShareholderEndpoint[];
  nsm: Nsm;
  ephemeral: X25519KeyPair;
  metrics: EnclaveMetrics;
  log: { warn: (o: object, m: string) => void; info: (o: object, m: string) => void };
  cacheTtlMs?: number;
  maxCacheEntries?: number;
  fetchTimeoutMs?: number;
  stragglerWindowMs?: number;
  /** Shares not all in after this long: ask as many more shareholders as are still outstanding. */
  hedgeAfterMs?: number;
  now?: () => number;
  /**
   * Shareholder id → the local stream that reaches it (production: unix sockets bridged to the
   * parent's vsock-proxy). TLS for `https://` shareholders is done inside the enclave, with the
   * URL's hostname as SNI and for verification — the host relays ciphertext only.
   */
  routes?: Map<string, EgressRoute>;
  /** Refuse shareholders without a route (production: there is no other network). */
  routesOnly?: boolean;
  /** PEM CA bundle for `https://` shareholders (default: Node's bundled Mozilla roots). */
  ca?: string;
  /**
   * Keep one challenge nonce and the attestation document over it ready per shareholder, so a
   * cold key costs one round trip per shareholder instead of two plus an NSM call. At most this
   * old (and at most half the nonce's remaining life when it was issued). 0 turns it off.
   */
  ticketLifetimeMs?: number;
  /** `user_data` of the documents sent with releases (the enclave's receipt key, SPEC.md §10). */
  userData?: Uint8Array;
}

interface CacheEntry {
  dek: Uint8Array;
  expiresAt: number;
  /** The last record opened with this DEK, for this binding, and its plaintext (saves an AES-GCM open per request). */
  opened?: { record: Uint8Array; binding: string; key: Uint8Array };
  /** A background refresh was started for this entry (at most one). */
  refreshStarted?: boolean;
  /** Which reconstruction (lease) this DEK came from: a new one for every fetch from the shareholders. */
  lease: number;
}

/** Everything the sealed record's AAD binds, as one comparable string. */
function bindingId(b: KeyBinding): string {
  return JSON.stringify([b.connectionId, b.provider, b.origin, b.authScheme, b.allow ?? null, b.policySha256 ?? null, b.shareholderSetSha256 ?? null]);
}

function openOrRefuse(record: Uint8Array, dek: Uint8Array, binding: KeyBinding): Uint8Array {
  try {
    return openUpstreamKey(record, dek, binding);
  } catch (cause) {
    throw new EnclaveError('sealed_record_invalid', 'sealed record does not open for this connection', { cause });
  }
}

/** The last fraction of a cached key's TTL in which a use refreshes it in the background. */
const REFRESH_AHEAD = 0.1;

export class KeyResolver {
  readonly #o: Required<Omit<KeyResolverOptions, 'routes' | 'routesOnly' | 'ca' | 'userData'>> & Pick<KeyResolverOptions, 'routes' | 'routesOnly' | 'ca' | 'userData'>;
  readonly #cache = new Map<string, CacheEntry>();
  #leases = 0;
  readonly #inflight = new Map<string, Promise<Uint8Array>>();
  /** Per connection: how many reconstructions were started, so the next one asks the next t shareholders. */
  readonly #rotation = new Map<string, number>();
  readonly #client: ShareholderClient;
  readonly #fanOut: FanOut;
  /** Connection-policy updates that came with leases, not yet taken by the server (SPEC.md §9.2). */
  readonly #leasePolicies = new Map<string, SignedOwnerMessage[]>();
  /** Bad shares seen, newest last (bounded): the host turns them into shareholder_anomaly alerts. */
  readonly anomalies: Array<{ seq: number; at: number; shareholder: string; connectionId: string }> = [];
  #anomalySeq = 0;

  constructor(options: KeyResolverOptions) {
    this.#o = {
      cacheTtlMs: 10 * 60_000,
      maxCacheEntries: 10_000,
      fetchTimeoutMs: 5_000,
      stragglerWindowMs: 2_000,
      hedgeAfterMs: 1_000,
      ticketLifetimeMs: 30_000,
      now: () => Date.now(),
      ...options,
    };
    parseShareholderEndpoints(this.#o.shareholders);
    if (this.#o.routesOnly) {
      const missing = this.#o.shareholders.filter((sh) => !this.#o.routes?.has(sh.id));
      if (missing.length > 0) throw new Error(`no route to shareholder ${missing.map((sh) => sh.id).join(', ')}`);
    }
    this.#client = new ShareholderClient(this.#o);
    this.#fanOut = {
      client: this.#client,
      metrics: this.#o.metrics,
      log: this.#o.log,
      now: this.#o.now,
      stragglerWindowMs: this.#o.stragglerWindowMs,
      hedgeAfterMs: this.#o.hedgeAfterMs,
      reportBad: (shareholder, connectionId) => this.#reportBad(shareholder, connectionId),
      onLeasePolicy: (connectionId, policy) => {
        const list = this.#leasePolicies.get(connectionId) ?? [];
        if (list.length < 16) list.push(policy);
        this.#leasePolicies.set(connectionId, list);
      },
    };
  }

  /**
   * Returns the plaintext upstream key for one request. The caller must not keep it. `recordSet`:
   * the shareholder set a version 0x04 record is sealed with (its hash is in `binding`) — its
   * members are asked and their releases authenticated against its keys, not the configured ones.
   */
  async upstreamKey(binding: KeyBinding, record: Uint8Array, threshold: number, recordSet?: readonly ShareholderSetMember[]): Promise<Uint8Array> {
    // A record that cannot open under this binding's version (a 0x04 record without its set, or a
    // set sent with an older record) is refused before it costs anyone a release.
    if (record[0] !== sealedRecordVersion(binding) || (binding.shareholderSetSha256 === undefined) !== (recordSet === undefined)) {
      throw new EnclaveError('sealed_record_invalid', 'sealed record does not open for this connection');
    }
    const cached = this.#cache.get(binding.connectionId);
    const now = this.#o.now();
    if (cached && cached.expiresAt > now) {
      this.#o.metrics.cache.inc({ result: 'hit' });
      const id = bindingId(binding);
      // Only a record that opened with the cached key may start a refresh: a host sending bogus
      // records cannot make the enclave fetch shares (and one attempt per cached key at most).
      const refreshDue = !cached.refreshStarted && cached.expiresAt - now < this.#o.cacheTtlMs * REFRESH_AHEAD;
      // Same record bytes and same binding as last time: the same plaintext (a copy; callers wipe theirs).
      if (cached.opened && cached.opened.binding === id && equalBytes(cached.opened.record, record)) {
        if (refreshDue) this.#refresh(cached, binding, record, threshold, recordSet);
        return cached.opened.key.slice();
      }
      // The DEK came from the shareholders for this connection, so a failure to open means the
      // record or its binding is not the owner's (a lying host). Not evicted: that would let a
      // host force share retrievals at will.
      const key = openOrRefuse(record, cached.dek, binding);
      cached.opened?.key.fill(0);
      cached.opened = { record: record.slice(), binding: id, key: key.slice() };
      if (refreshDue) this.#refresh(cached, binding, record, threshold, recordSet);
      return key;
    }
    this.#o.metrics.cache.inc({ result: 'miss' });
    return openOrRefuse(record, await (this.#inflight.get(binding.connectionId) ?? this.#startFetch(binding, record, threshold, recordSet)), binding);
  }

  /**
   * Refresh-ahead: a key in use is fetched again through the shareholders in the background
   * during the last tenth of its TTL, so its requests never wait for a reconstruction. The
   * shareholders decide as on any fetch: if they refuse (policy changed, owner revoked) or are
   * unreachable, the cached key still expires at its time — the TTL bound is unchanged.
   */
  #refresh(entry: CacheEntry, binding: KeyBinding, record: Uint8Array, threshold: number, recordSet: readonly ShareholderSetMember[] | undefined): void {
    entry.refreshStarted = true;
    if (this.#inflight.has(binding.connectionId)) return;
    this.#o.metrics.cache.inc({ result: 'refresh' });
    this.#startFetch(binding, record, threshold, recordSet).catch((error: Error) => this.#o.log.warn({ connectionId: binding.connectionId, reason: error.message }, 'key refresh failed; the cached key expires at its time'));
  }

  /**
   * One fetch per connection at a time. Its result is cached only if it is still the connection's
   * current fetch when it completes: an eviction (revoke, kill, rotation) during a fetch is not
   * undone by the fetch landing afterwards. Requests already waiting still get their answer.
   */
  #startFetch(binding: KeyBinding, record: Uint8Array, threshold: number, recordSet: readonly ShareholderSetMember[] | undefined): Promise<Uint8Array> {
    const id = binding.connectionId;
    const slot: { pending?: Promise<Uint8Array> } = {};
    const { members, vouched } = this.#members(id, recordSet);
    slot.pending = reconstructDek(this.#fanOut, this.#askOrder(id, threshold, members), binding, record, threshold, vouched)
      .then((dek) => {
        if (this.#inflight.get(id) === slot.pending) this.#remember(id, dek);
        return dek;
      })
      .finally(() => {
        if (this.#inflight.get(id) === slot.pending) this.#inflight.delete(id);
        // Replace the tickets this fetch used once it is done, not while it competes for the CPU.
        this.#client.topUp();
      });
    this.#inflight.set(id, slot.pending);
    return slot.pending;
  }

  /**
   * Whom a lease asks, and with which key each release must authenticate. Older records: the
   * configured shareholders and keys. A 0x04 record: only the members of its set, each reached
   * by its configured route (a member the configuration has no route for is unreachable, never
   * trusted from elsewhere) and authenticated by the key the set lists, whatever the configuration
   * says. `vouched`: members whose set key the configuration confirms (all, for older records) —
   * share-fanout names a bad share only when the key was rebuilt from vouched members' shares.
   */
  #members(connectionId: string, recordSet: readonly ShareholderSetMember[] | undefined): { members: ShareholderEndpoint[]; vouched: ReadonlySet<string> } {
    if (recordSet === undefined) return { members: this.#o.shareholders, vouched: new Set(this.#o.shareholders.map((sh) => sh.id)) };
    const configured = new Map(this.#o.shareholders.map((sh) => [sh.id, sh]));
    const members: ShareholderEndpoint[] = [];
    const vouched = new Set<string>();
    for (const m of recordSet) {
      const sh = configured.get(m.id);
      if (!sh) {
        this.#o.log.warn({ shareholder: m.id, connectionId }, 'the record\'s shareholder set names a shareholder this enclave has no route to; not asking it');
        continue;
      }
      members.push({ ...sh, publicKey: m.publicKey });
      if (sh.publicKey === m.publicKey) vouched.add(m.id);
    }
    return { members, vouched };
  }

  /** The shareholders in the order this connection's next lease asks them: rotated by t per lease. */
  #askOrder(connectionId: string, threshold: number, list: readonly ShareholderEndpoint[]): ShareholderEndpoint[] {
    if (list.length === 0) return [];
    const started = this.#rotation.get(connectionId) ?? 0;
    this.#rotation.delete(connectionId);
    this.#rotation.set(connectionId, started + 1);
    if (this.#rotation.size > this.#o.maxCacheEntries) this.#rotation.delete(this.#rotation.keys().next().value!);
    const offset = (started * Math.max(1, threshold)) % list.length;
    return [...list.slice(offset), ...list.slice(0, offset)];
  }

  #reportBad(shareholder: string, connectionId: string): void {
    this.#o.metrics.badShares.inc({ shareholder });
    this.anomalies.push({ seq: ++this.#anomalySeq, at: this.#o.now(), shareholder, connectionId });
    if (this.anomalies.length > 1000) this.anomalies.shift();
    this.#o.log.warn({ shareholder, connectionId }, 'shareholder returned a bad share');
  }

  /**
   * The lease the connection's cached DEK was obtained under (each reconstruction through the
   * shareholders is one lease; refresh-ahead starts a new one), or undefined when none is cached.
   */
  leaseOf(connectionId: string): number | undefined {
    const entry = this.#cache.get(connectionId);
    return entry && entry.expiresAt > this.#o.now() ? entry.lease : undefined;
  }

  /** The connection-policy updates shareholders sent with leases since the last call (the server verifies them). */
  takeLeasePolicies(connectionId: string): SignedOwnerMessage[] {
    const list = this.#leasePolicies.get(connectionId) ?? [];
    this.#leasePolicies.delete(connectionId);
    return list;
  }

  /** Drops the connection's DEK (and any fetch in flight from being cached); the next request needs a new lease. */
  evict(connectionId: string): void {
    this.#inflight.delete(connectionId);
    const entry = this.#cache.get(connectionId);
    entry?.dek.fill(0);
    entry?.opened?.key.fill(0);
    this.#cache.delete(connectionId);
  }

  async close(): Promise<void> {
    for (const id of [...this.#cache.keys()]) this.evict(id);
    await this.#client.close();
  }

  #remember(connectionId: string, dek: Uint8Array): void {
    if (this.#cache.size >= this.#o.maxCacheEntries) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.evict(oldest);
    }
    this.#cache.set(connectionId, { dek, expiresAt: this.#o.now() + this.#o.cacheTtlMs, lease: ++this.#leases });
  }
}
