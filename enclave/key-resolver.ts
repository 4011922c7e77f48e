/**
 * Resolves a connection's data key (DEK): from the in-memory cache (TTL, size bound), or by
 * asking every shareholder in parallel — challenge → attestation document (nonce + our ephemeral
 * public key) → release — and combining the first t shares that open the sealed record.
 *
 * Shares that arrive after the key is rebuilt are still checked (within `stragglerWindowMs`) so a
 * shareholder serving a bad share is named even when it is not among the fastest t; then they are
 * aborted. The DEK, not the key, is cached; the key is opened per request and dropped. A DEK in
 * use is refreshed in the background in the last tenth of its TTL (see #refresh), and the
 * challenge + attestation step is done ahead per shareholder (see Ticket).
 */
import { Pool } from 'undici';
import type { Nsm } from '../attestation/index.ts';
import {
  equalBytes,
  combineSharesUnchecked,
  decodeShare,
  fromHex,
  openShareEnvelope,
  shareRecipient,
  shareSender,
  type ShareRecipient,
  type ShareSender,
  openUpstreamKey,
  robustCombine,
  ProtocolError,
  type KeyBinding,
  type Share,
  type X25519KeyPair,
} from '../protocol/index.ts';
import { EnclaveError } from './errors.ts';
import { routedConnect, type EgressRoute } from './forward.ts';
import type { EnclaveMetrics } from './metrics.ts';

export interface ShareholderEndpoint {
  id: string;
  url: string;
  /**
   * The shareholder's X25519 identity key, hex — from the enclave's own measured configuration
   * (the image carries it, so the PCRs the owners pin cover it), never from the host or the
   * reply. Releases must authenticate as this key (HPKE auth mode, SPEC.md §3).
   */
  publicKey: string;
  /**
   * Production: the parent's vsock port whose vsock-proxy reaches this shareholder; enclave-init.sh
   * bridges `<socket dir>/shareholder-<id>.sock` to it (see shareholderBridges).
   */
  vsockPort?: number;
}

const SHAREHOLDER_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Checks the enclave's shareholder configuration: `[{ id, url, publicKey }]`, ids unique. */
export function parseShareholderEndpoints(value: unknown): ShareholderEndpoint[] {
  const bad = (m: string) => new Error(`shareholder configuration: ${m}`);
  if (!Array.isArray(value) || value.length === 0) throw bad('must be a non-empty array of { id, url, publicKey }');
  const seen = new Set<string>();
  return value.map((v, i) => {
    const { id, url, publicKey } = (v ?? {}) as Record<string, unknown>;
    if (typeof id !== 'string' || !SHAREHOLDER_ID.test(id)) throw bad(`[${i}].id is not a shareholder id`);
    if (seen.has(id)) throw bad(`shareholder ${id} is listed twice`);
    seen.add(id);
    if (typeof url !== 'string' || !/^https?:\/\//.test(url)) throw bad(`[${i}].url must be an http(s) URL`);
    if (typeof publicKey !== 'string' || !/^[0-9a-f]{64}$/.test(publicKey)) throw bad(`[${i}].publicKey must be the shareholder's X25519 identity key (64 hex digits)`);
    const { vsockPort } = v as Record<string, unknown>;
    if (vsockPort !== undefined && (typeof vsockPort !== 'number' || !Number.isInteger(vsockPort) || vsockPort < 1 || vsockPort > 0xffffffff)) {
      throw bad(`[${i}].vsockPort must be a vsock port number`);
    }
    return { id, url, publicKey, ...(typeof vsockPort === 'number' ? { vsockPort } : {}) };
  });
}

/** `<id> <vsockPort>` per shareholder, for enclave-init.sh's socat bridges; every shareholder needs a port. */
export function shareholderBridges(endpoints: readonly ShareholderEndpoint[]): string {
  return endpoints
    .map((sh) => {
      if (sh.vsockPort === undefined) throw new Error(`shareholder configuration: ${sh.id} has no vsockPort, so the enclave has no route to it`);
      return `${sh.id} ${sh.vsockPort}\n`;
    })
    .join('');
}

/** The local stream that reaches a shareholder from inside the enclave (a socat bridge to vsock). */
export function shareholderSocketRoute(dir: string, id: string): EgressRoute {
  return { kind: 'unix', path: `${dir}/shareholder-${id}.sock` };
}

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
  now?: () => number;
  /**
   * Shareholder id → the local stream that reaches it (production: unix sockets bridged to the
   * parent's vsock-proxy). TLS for `https://` shareholders is done here, inside the enclave, with
   * the URL's hostname as SNI and for verification — the host relays ciphertext only.
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

/** A shareholder's challenge nonce and our attestation document over it, ready for a release. */
interface Ticket {
  nonce: Uint8Array;
  document: Uint8Array;
  /** Wall-clock ms (the shareholder's nonce expiry is wall-clock too). */
  usableUntil: number;
}

interface Received {
  shareholder: string;
  share: Share;
}

/** Everything the sealed record's AAD binds, as one comparable string. */
function bindingId(b: KeyBinding): string {
  return JSON.stringify([b.connectionId, b.provider, b.origin, b.authScheme, b.allow ?? null]);
}

/** The last fraction of a cached key's TTL in which a use refreshes it in the background. */
const REFRESH_AHEAD = 0.1;

export class KeyResolver {
  readonly #o: Required<Omit<KeyResolverOptions, 'now' | 'routes' | 'routesOnly' | 'ca'>> & Pick<KeyResolverOptions, 'routes' | 'routesOnly' | 'ca'> & { now: () => number };
  readonly #cache = new Map<string, CacheEntry>();
  #leases = 0;
  readonly #inflight = new Map<string, Promise<Uint8Array>>();
  readonly #pools = new Map<string, Pool>();
  /** The ephemeral key, imported once for HPKE opens. */
  #recipient: Promise<ShareRecipient> | undefined;
  /** Each shareholder's identity key, imported once: the sender a release must authenticate as. */
  readonly #senders = new Map<string, Promise<ShareSender>>();
  readonly #tickets = new Map<string, Ticket>();
  readonly #preparing = new Map<string, Promise<void>>();
  #ticketTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Bad shares seen, newest last (bounded): the host turns them into shareholder_anomaly alerts. */
  readonly anomalies: Array<{ seq: number; at: number; shareholder: string; connectionId: string }> = [];
  #anomalySeq = 0;

  constructor(options: KeyResolverOptions) {
    this.#o = {
      cacheTtlMs: 10 * 60_000,
      maxCacheEntries: 10_000,
      fetchTimeoutMs: 5_000,
      stragglerWindowMs: 2_000,
      ticketLifetimeMs: 30_000,
      now: () => Date.now(),
      ...options,
    };
    parseShareholderEndpoints(this.#o.shareholders);
    if (this.#o.routesOnly) {
      const missing = this.#o.shareholders.filter((sh) => !this.#o.routes?.has(sh.id));
      if (missing.length > 0) throw new Error(`no route to shareholder ${missing.map((sh) => sh.id).join(', ')}`);
    }
    if (this.#o.ticketLifetimeMs > 0) {
      setImmediate(() => this.#topUp()).unref();
      this.#ticketTimer = setInterval(() => this.#topUp(), this.#o.ticketLifetimeMs / 3);
      this.#ticketTimer.unref();
    }
  }

  /** Prepares tickets where one is missing or past half its life. */
  #topUp(): void {
    for (const sh of this.#o.shareholders) {
      const t = this.#tickets.get(sh.id);
      if (!t || t.usableUntil - Date.now() < this.#o.ticketLifetimeMs / 2) this.#prepare(sh);
    }
  }

  /** Returns the plaintext upstream key for one request. The caller must not keep it. */
  async upstreamKey(binding: KeyBinding, record: Uint8Array, threshold: number): Promise<Uint8Array> {
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
        if (refreshDue) this.#refresh(cached, binding, record, threshold);
        return cached.opened.key.slice();
      }
      try {
        const key = openUpstreamKey(record, cached.dek, binding);
        cached.opened?.key.fill(0);
        cached.opened = { record: record.slice(), binding: id, key: key.slice() };
        if (refreshDue) this.#refresh(cached, binding, record, threshold);
        return key;
      } catch (cause) {
        // The DEK came from the shareholders for this connection, so a failure means the record
        // or its binding is not the owner's (a lying host). Not evicted: that would let a host
        // force share retrievals at will.
        throw new EnclaveError('sealed_record_invalid', 'sealed record does not open for this connection', { cause });
      }
    }
    this.#o.metrics.cache.inc({ result: 'miss' });
    const dek = await (this.#inflight.get(binding.connectionId) ?? this.#startFetch(binding, record, threshold));
    try {
      return openUpstreamKey(record, dek, binding);
    } catch (cause) {
      throw new EnclaveError('sealed_record_invalid', 'sealed record does not open for this connection', { cause });
    }
  }

  /**
   * Refresh-ahead: a key in use is fetched again through the shareholders in the background
   * during the last tenth of its TTL, so its requests never wait for a reconstruction. The
   * shareholders decide as on any fetch: if they refuse (policy changed, owner revoked) or are
   * unreachable, the cached key still expires at its time — the TTL bound is unchanged.
   */
  #refresh(entry: CacheEntry, binding: KeyBinding, record: Uint8Array, threshold: number): void {
    entry.refreshStarted = true;
    if (this.#inflight.has(binding.connectionId)) return;
    this.#o.metrics.cache.inc({ result: 'refresh' });
    this.#startFetch(binding, record, threshold).catch((error: Error) => this.#o.log.warn({ connectionId: binding.connectionId, reason: error.message }, 'key refresh failed; the cached key expires at its time'));
  }

  /**
   * One fetch per connection at a time. Its result is cached only if it is still the connection's
   * current fetch when it completes: an eviction (revoke, kill, rotation) during a fetch is not
   * undone by the fetch landing afterwards. Requests already waiting still get their answer.
   */
  #startFetch(binding: KeyBinding, record: Uint8Array, threshold: number): Promise<Uint8Array> {
    const id = binding.connectionId;
    const slot: { pending?: Promise<Uint8Array> } = {};
    slot.pending = this.#fetchDek(binding, record, threshold, () => this.#inflight.get(id) === slot.pending).finally(() => {
      if (this.#inflight.get(id) === slot.pending) this.#inflight.delete(id);
      // Replace the tickets this fetch used once it is done, not while it competes for the CPU.
      this.#topUp();
    });
    this.#inflight.set(id, slot.pending);
    return slot.pending;
  }

  /**
   * The lease the connection's cached DEK was obtained under (each reconstruction through the
   * shareholders is one lease; refresh-ahead starts a new one), or undefined when none is cached.
   */
  leaseOf(connectionId: string): number | undefined {
    const entry = this.#cache.get(connectionId);
    return entry && entry.expiresAt > this.#o.now() ? entry.lease : undefined;
  }

  evict(connectionId: string): void {
    this.#inflight.delete(connectionId);
    const entry = this.#cache.get(connectionId);
    entry?.dek.fill(0);
    entry?.opened?.key.fill(0);
    this.#cache.delete(connectionId);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#ticketTimer);
    this.#tickets.clear();
    await Promise.allSettled([...this.#preparing.values()]);
    for (const id of [...this.#cache.keys()]) this.evict(id);
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
  }

  #remember(connectionId: string, dek: Uint8Array): void {
    if (this.#cache.size >= this.#o.maxCacheEntries) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.evict(oldest);
    }
    this.#cache.set(connectionId, { dek, expiresAt: this.#o.now() + this.#o.cacheTtlMs, lease: ++this.#leases });
  }

  #pool(sh: ShareholderEndpoint): Pool {
    let pool = this.#pools.get(sh.id);
    if (!pool) {
      const route = this.#o.routes?.get(sh.id);
      const connect = route ? routedConnect(route, new URL(sh.url), this.#o.fetchTimeoutMs, this.#o.ca, 'shareholder') : this.#o.ca ? { ca: this.#o.ca } : undefined;
      pool = new Pool(sh.url, { connections: 8, keepAliveTimeout: 30_000, ...(connect ? { connect: connect as never } : {}) });
      this.#pools.set(sh.id, pool);
    }
    return pool;
  }

  async #post(sh: ShareholderEndpoint, path: string, body: unknown, signal: AbortSignal): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await this.#pool(sh).request({
      path,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal,
      headersTimeout: this.#o.fetchTimeoutMs,
      bodyTimeout: this.#o.fetchTimeoutMs,
    });
    const text = await res.body.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text);
    } catch {
      json = {};
    }
    return { status: res.statusCode, json };
  }

  /** A fresh challenge from `sh` and our attestation document over it. */
  async #newTicket(sh: ShareholderEndpoint, signal: AbortSignal): Promise<Ticket> {
    const asked = Date.now();
    const challenge = await this.#post(sh, '/v1/challenges', {}, signal);
    if (challenge.status !== 200 || typeof challenge.json.nonce !== 'string') throw new Error(`challenge failed (${challenge.status})`);
    const nonce = fromHex(challenge.json.nonce, 'nonce');
    const document = await this.#o.nsm.getAttestationDocument({ nonce, publicKey: this.#o.ephemeral.publicKey });
    const remaining = Date.parse(String(challenge.json.expiresAt)) - asked;
    const lifetime = Math.min(this.#o.ticketLifetimeMs, Number.isFinite(remaining) ? remaining / 2 : 0);
    return { nonce, document, usableUntil: asked + lifetime };
  }

  /** Prepares the next ticket for `sh` in the background (one at a time; failures wait for the next top-up). */
  #prepare(sh: ShareholderEndpoint): void {
    if (this.#closed || this.#o.ticketLifetimeMs <= 0 || this.#preparing.has(sh.id)) return;
    const work = this.#newTicket(sh, AbortSignal.timeout(this.#o.fetchTimeoutMs))
      .then((ticket) => {
        if (!this.#closed) this.#tickets.set(sh.id, ticket);
      })
      .catch(() => undefined)
      .finally(() => this.#preparing.delete(sh.id));
    this.#preparing.set(sh.id, work);
  }

  /** Takes the prepared ticket for `sh` if it is still usable (each is used once). */
  #take(sh: ShareholderEndpoint): Ticket | undefined {
    const ticket = this.#tickets.get(sh.id);
    this.#tickets.delete(sh.id);
    return ticket && ticket.usableUntil > Date.now() ? ticket : undefined;
  }

  async #release(sh: ShareholderEndpoint, ticket: Ticket, connectionId: string, signal: AbortSignal) {
    const release = await this.#post(sh, '/v1/releases', { document: Buffer.from(ticket.document).toString('base64'), connectionIds: [connectionId] }, signal);
    const shares = release.json.shares as Array<{ connectionId: string; envelope: string }> | undefined;
    const mine = shares?.find((s) => s.connectionId === connectionId);
    const code = release.status === 200 && mine ? null : ((release.json.error as { code?: string } | undefined)?.code ?? `status_${release.status}`);
    return { mine, code };
  }

  /** One shareholder's share for one connection, opened with our ephemeral key. */
  async #fetchShare(sh: ShareholderEndpoint, connectionId: string, signal: AbortSignal): Promise<Share> {
    const prepared = this.#take(sh);
    let ticket = prepared ?? (await this.#newTicket(sh, signal));
    let { mine, code } = await this.#release(sh, ticket, connectionId, signal);
    // A prepared ticket the shareholder no longer takes (it restarted, or the clocks disagree
    // about its age): once more with a fresh one.
    if (prepared && code !== null && (code.startsWith('nonce_') || code === 'attestation_expired')) {
      ticket = await this.#newTicket(sh, signal);
      ({ mine, code } = await this.#release(sh, ticket, connectionId, signal));
    }
    if (code !== null || !mine) throw new Error(`release refused: ${code}`);
    const nonce = ticket.nonce;
    this.#recipient ??= shareRecipient(this.#o.ephemeral.privateKey);
    let sender = this.#senders.get(sh.id);
    if (!sender) {
      sender = shareSender(fromHex(sh.publicKey, 'publicKey'));
      this.#senders.set(sh.id, sender);
    }
    // Auth mode: opens only if sealed with this shareholder's identity key for this nonce,
    // connection and shareholder id. Whatever fails here was not made by the shareholder — a
    // forgery or damage in transit — and is never counted as the shareholder's bad share.
    const plaintext = await openShareEnvelope(
      await this.#recipient,
      new Uint8Array(Buffer.from(mine.envelope, 'base64')),
      { purpose: 'release', connectionId, shareholderId: sh.id, nonce },
      await sender,
    );
    return decodeShare(plaintext);
  }

  #fetchDek(binding: KeyBinding, record: Uint8Array, threshold: number, stillWanted: () => boolean): Promise<Uint8Array> {
    const started = this.#o.now();
    const { shareholders } = this.#o;
    const controller = new AbortController();
    const received: Received[] = [];
    const check = (dek: Uint8Array) => {
      if (dek.length !== 32) return false;
      try {
        openUpstreamKey(record, dek, binding).fill(0);
        return true;
      } catch {
        return false;
      }
    };
    return new Promise<Uint8Array>((resolve, reject) => {
      let outstanding = shareholders.length;
      let leaseRefusals = 0;
      let secret: Uint8Array | undefined;
      let basis: Share[] = [];
      // Only shares that opened — authenticated as their shareholder (HPKE auth mode) — reach
      // here, so a bad share is the named shareholder's own, never a man in the middle's.
      const reportBad = (shareholder: string) => {
        this.#o.metrics.badShares.inc({ shareholder });
        this.anomalies.push({ seq: ++this.#anomalySeq, at: this.#o.now(), shareholder, connectionId: binding.connectionId });
        if (this.anomalies.length > 1000) this.anomalies.shift();
        this.#o.log.warn({ shareholder, connectionId: binding.connectionId }, 'shareholder returned a bad share');
      };
      const settleIfDone = () => {
        if (secret || outstanding > 0) return;
        if (received.length >= threshold) {
          // Enough shares arrived but no t of them open the record: the record or its binding
          // (origin, provider, scheme) is not what the owner sealed.
          reject(new EnclaveError('sealed_record_invalid', 'no combination of the released shares opens the sealed record'));
          return;
        }
        // Shareholders that answered but refused because today's leases are spent (SPEC.md §9): the
        // owner's daily limit, not an outage.
        if (leaseRefusals > 0 && received.length + leaseRefusals >= threshold) {
          reject(new EnclaveError('lease_limit_reached', `the shareholders granted this connection's leases for today; ${received.length} of ${threshold} shares obtained`));
          return;
        }
        reject(new EnclaveError('shareholders_unavailable', `only ${received.length} of the ${threshold} shares needed could be obtained`));
      };
      const onShare = (shareholder: string, share: Share) => {
        if (secret) {
          // Straggler: check it against the rebuilt key to name bad shareholders.
          let same = false;
          try {
            const again = combineSharesUnchecked([...basis, share]);
            same = equalBytes(again, secret); // constant-time: this compares rebuilt data keys
          } catch {
            same = false;
          }
          if (!same) reportBad(shareholder);
          return;
        }
        received.push({ shareholder, share });
        if (received.length < threshold) return;
        try {
          const result = robustCombine(
            received.map((r) => r.share),
            threshold,
            check,
          );
          secret = result.secret;
          const used = new Set(result.usedIndices);
          basis = received.filter((r) => used.has(r.share.index)).slice(0, threshold - 1).map((r) => r.share);
          for (const p of result.badPositions) reportBad(received[p]!.shareholder);
          if (stillWanted()) this.#remember(binding.connectionId, secret);
          this.#o.metrics.reconstructionSeconds.observe((this.#o.now() - started) / 1000);
          resolve(secret);
          setTimeout(() => controller.abort(), this.#o.stragglerWindowMs).unref();
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
          // Not yet consistent: wait for more shares.
        }
      };
      for (const sh of shareholders) {
        const t0 = this.#o.now();
        this.#fetchShare(sh, binding.connectionId, controller.signal)
          .then((share) => {
            this.#o.metrics.shareFetchSeconds.observe({ shareholder: sh.id }, (this.#o.now() - t0) / 1000);
            onShare(sh.id, share);
          })
          .catch((error: Error) => {
            if (error.message === 'release refused: lease_limit_reached') leaseRefusals++;
            if (!controller.signal.aborted) {
              const unauthenticated = error instanceof ProtocolError && error.code === 'envelope_auth_failed';
              this.#o.metrics.shareFetchFailures.inc({ shareholder: sh.id, reason: unauthenticated ? 'unauthenticated' : error.name === 'ProtocolError' ? 'envelope' : 'request' });
              this.#o.log.warn(
                { shareholder: sh.id, connectionId: binding.connectionId, reason: error.message },
                unauthenticated ? 'a reply did not authenticate as this shareholder (forged or damaged in transit; not the shareholder\'s share)' : 'share retrieval failed',
              );
            }
          })
          .finally(() => {
            outstanding--;
            settleIfDone();
          });
      }
    });
  }
}
