/**
 * Talking to the shareholders: one keep-alive pool per shareholder (through its route when it has
 * one; TLS for `https://` shareholders is done here, inside the enclave), prepared tickets, and
 * one release = one share for one connection, opened with the enclave's ephemeral key.
 *
 * Prepared tickets: for each shareholder one challenge nonce and the NSM attestation document
 * over it are kept ready (used once; at most `ticketLifetimeMs` old and half the nonce's life),
 * so a cold key costs one round trip per shareholder instead of two plus an NSM call. A ticket
 * the shareholder refuses (it restarted, clocks disagree) is replaced once with a fresh one.
 * Never logs a share, a nonce's use or a document.
 */
import { Pool } from 'undici';
import type { Nsm } from '../attestation/nsm.ts';
import { fromHex } from '../protocol/bytes.ts';
import { connectionPolicySha256 } from '../protocol/connection-policy.ts';
import type { SignedOwnerMessage } from '../protocol/owner-signature.ts';
import { decodeShare, type Share } from '../protocol/shamir.ts';
import { isNonceRefusal, shareholderErrorOf } from '../protocol/shareholder-errors.ts';
import { openShareEnvelope, shareRecipient, shareSender, type ShareRecipient, type ShareSender, type X25519KeyPair } from '../protocol/share-envelope.ts';
import { routedConnect, type EgressRoute } from './forward.ts';
import type { ShareholderEndpoint } from './shareholders.ts';

export interface ShareholderClientOptions {
  shareholders: ShareholderEndpoint[];
  nsm: Nsm;
  ephemeral: X25519KeyPair;
  fetchTimeoutMs: number;
  /** 0 turns prepared tickets off. */
  ticketLifetimeMs: number;
  routes?: Map<string, EgressRoute> | undefined;
  ca?: string | undefined;
  /** `user_data` of the documents sent with releases: the receipt key, so shareholders log which enclave took each lease. */
  userData?: Uint8Array | undefined;
}

/** A shareholder's challenge nonce and our attestation document over it, ready for a release. */
interface Ticket {
  nonce: Uint8Array;
  document: Uint8Array;
  /** Wall-clock ms (the shareholder's nonce expiry is wall-clock too). */
  usableUntil: number;
}

/** A release the shareholder refused, with its error code (`lease_limit_reached`, `nonce_used`, …). */
export class ReleaseRefused extends Error {
  readonly code: string;
  constructor(code: string) {
    super(`release refused: ${code}`);
    this.code = code;
    this.name = 'ReleaseRefused';
  }
}

export class ShareholderClient {
  readonly #o: ShareholderClientOptions;
  readonly #pools = new Map<string, Pool>();
  /** The ephemeral key, imported once for HPKE opens. */
  #recipient: Promise<ShareRecipient> | undefined;
  /** Identity keys releases must authenticate as, imported once, by key hex (bounded). */
  readonly #senders = new Map<string, Promise<ShareSender>>();
  readonly #tickets = new Map<string, Ticket>();
  readonly #preparing = new Map<string, Promise<void>>();
  #ticketTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: ShareholderClientOptions) {
    this.#o = options;
    if (options.ticketLifetimeMs > 0) {
      setImmediate(() => this.topUp()).unref();
      this.#ticketTimer = setInterval(() => this.topUp(), options.ticketLifetimeMs / 3);
      this.#ticketTimer.unref();
    }
  }

  /** Prepares tickets where one is missing or past half its life. */
  topUp(): void {
    for (const sh of this.#o.shareholders) {
      const t = this.#tickets.get(sh.id);
      if (!t || t.usableUntil - Date.now() < this.#o.ticketLifetimeMs / 2) this.#prepare(sh);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#ticketTimer);
    this.#tickets.clear();
    await Promise.allSettled([...this.#preparing.values()]);
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
  }

  /**
   * One shareholder's share for one connection, opened with our ephemeral key, and the owner-signed
   * connection-policy update the shareholder sent with this lease (SPEC.md §9.2), if any: its hash
   * is in the envelope's AAD, so a share whose update was stripped or swapped on the way does not open.
   */
  async fetchShare(sh: ShareholderEndpoint, connectionId: string, signal: AbortSignal): Promise<Share & { leasePolicy?: SignedOwnerMessage }> {
    const prepared = this.#take(sh);
    let ticket = prepared ?? (await this.#newTicket(sh, signal));
    let { mine, code } = await this.#release(sh, ticket, connectionId, signal);
    // A prepared ticket the shareholder no longer takes (it restarted, or the clocks disagree
    // about its age): once more with a fresh one.
    if (prepared && code !== null && (isNonceRefusal(code) || code === 'attestation_expired')) {
      ticket = await this.#newTicket(sh, signal);
      ({ mine, code } = await this.#release(sh, ticket, connectionId, signal));
    }
    if (code !== null || !mine) throw new ReleaseRefused(String(code));
    const nonce = ticket.nonce;
    this.#recipient ??= shareRecipient(this.#o.ephemeral.privateKey);
    // By key, not id: a version 0x04 record names the key its set binds, which may differ from the configured one.
    let sender = this.#senders.get(sh.publicKey);
    if (!sender) {
      sender = shareSender(fromHex(sh.publicKey, 'publicKey'));
      if (this.#senders.size >= 1024) this.#senders.delete(this.#senders.keys().next().value!);
      this.#senders.set(sh.publicKey, sender);
    }
    // Auth mode: opens only if sealed with this shareholder's identity key for this nonce,
    // connection and shareholder id. Whatever fails here was not made by the shareholder — a
    // forgery or damage in transit — and is never counted as the shareholder's bad share.
    const leasePolicy = mine.policy;
    const plaintext = await openShareEnvelope(
      await this.#recipient,
      new Uint8Array(Buffer.from(mine.envelope, 'base64')),
      { purpose: 'release', connectionId, shareholderId: sh.id, nonce, ...(leasePolicy !== undefined ? { leasePolicySha256: connectionPolicySha256(leasePolicy) } : {}) },
      await sender,
    );
    return { ...decodeShare(plaintext), ...(leasePolicy !== undefined ? { leasePolicy } : {}) };
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
    // Anything but a JSON object reads as {}: the caller then refuses by status and missing fields.
    const json = await res.body.json().then((v) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : {}), () => ({}));
    return { status: res.statusCode, json };
  }

  /** A fresh challenge from `sh` and our attestation document over it. */
  async #newTicket(sh: ShareholderEndpoint, signal: AbortSignal): Promise<Ticket> {
    const asked = Date.now();
    const challenge = await this.#post(sh, '/v1/challenges', {}, signal);
    if (challenge.status !== 200 || typeof challenge.json.nonce !== 'string') throw new Error(`challenge failed (${challenge.status})`);
    const nonce = fromHex(challenge.json.nonce, 'nonce');
    const document = await this.#o.nsm.getAttestationDocument({ nonce, publicKey: this.#o.ephemeral.publicKey, ...(this.#o.userData ? { userData: this.#o.userData } : {}) });
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
    const shares = release.json.shares as Array<{ connectionId: string; envelope: string; policy?: SignedOwnerMessage }> | undefined;
    const mine = shares?.find((s) => s.connectionId === connectionId);
    const refusal = release.status === 200 && mine ? null : shareholderErrorOf(release.status, release.json); // by registered code (protocol/shareholder-errors.ts)
    const code = refusal === null ? null : refusal.code === 'unrecognized' ? `unrecognized_status_${release.status}` : refusal.code;
    return { mine, code };
  }
}
