/**
 * The enclave's signed usage receipts, kept beside the audit trail (protocol/SPEC.md §10): the
 * host collects every receipt the enclave signed, in order (`GET /receipts?after=` on the enclave
 * RPC), stores each exactly as signed with the attestation document that binds its receipt key,
 * and hands them — with its own recorded totals — to the owner's `securegate usage --verify` and
 * the dashboard. The host is not trusted here: it cannot make a receipt, only keep or lose one,
 * and the verifier checks every signature and the chain's continuity itself. Holds no key.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Dispatcher } from 'undici';
import type { SignedReceiptHead, SignedUsageReceipt } from '../protocol/index.ts';
import { enclaveAttestation } from './enclave-client.ts';
import type { HostStore } from './store.ts';

const DAY_MS = 86_400_000;

/** Stores a receipt unless this receipt key's seq is already stored (the table itself allows duplicates, so a replay stays visible). */
const STORE_RECEIPT = `INSERT INTO usage_receipts (id, enclave_key, seq, connection_id, day, signed, received_at)
  SELECT $1, $2, CAST($3 AS BIGINT), $4, CAST($5 AS INTEGER), $6, CAST($7 AS BIGINT)
  WHERE NOT EXISTS (SELECT 1 FROM usage_receipts WHERE enclave_key = $2 AND seq = $3)`;

/** What `GET /admin/v1/receipts` answers: the evidence, unverified (the verifier checks it). */
export interface ReceiptEvidence {
  days: { from: number; to: number };
  receipts: SignedUsageReceipt[];
  /** Receipt key → base64 attestation document whose user_data names it. */
  attestations: Record<string, string>;
  /** The host's own recorded totals per connection and UTC day (audit rows). */
  host: Array<{ connectionId: string; day: number; requests: number; tokens: number }>;
  /** The running enclave's head signed over the verifier's nonce, when one was asked for. */
  head: SignedReceiptHead | null;
}

interface ChainAnswer {
  enclaveKey: string;
  receipts: SignedUsageReceipt[];
  seq: number;
  head?: SignedReceiptHead;
}

async function receiptChain(enclave: Dispatcher, after: number, nonce?: string, connections: string[] = []): Promise<ChainAnswer> {
  const q = new URLSearchParams({ after: String(after), limit: '1000', ...(nonce ? { nonce, connections: connections.join(',') } : {}) });
  const res = await enclave.request({ path: `/receipts?${q}`, method: 'GET', headersTimeout: 5000, bodyTimeout: 5000 });
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new Error(`enclave answered ${res.statusCode} for its receipts`);
  }
  return (await res.body.json()) as ChainAnswer;
}

export class ReceiptCollector {
  readonly #store: HostStore;
  readonly #enclave: Dispatcher;
  /** Per receipt key: the newest seq stored (so a restarted host resumes where it stopped). */
  readonly #cursor = new Map<string, number>();
  #running: Promise<number> | undefined;

  constructor(store: HostStore, enclave: Dispatcher) {
    this.#store = store;
    this.#enclave = enclave;
  }

  /** Pulls and stores every receipt signed since the last collection; returns how many. One at a time. */
  collect(): Promise<number> {
    this.#running ??= this.#collect().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #collect(): Promise<number> {
    const db = this.#store.db;
    let stored = 0;
    for (;;) {
      const probe = await receiptChain(this.#enclave, Number.MAX_SAFE_INTEGER);
      const key = probe.enclaveKey;
      if (!this.#cursor.has(key)) {
        const [r] = await db.query('SELECT MAX(seq) AS seq FROM usage_receipts WHERE enclave_key = $1', [key]);
        this.#cursor.set(key, r?.seq === null || r?.seq === undefined ? 0 : Number(r.seq));
        const [known] = await db.query('SELECT enclave_key FROM receipt_keys WHERE enclave_key = $1', [key]);
        if (!known) {
          // The document over a fresh nonce whose user_data names this receipt key: what lets the
          // owner tell the key belongs to attested code (the verifier checks it, not the host).
          const att = await enclaveAttestation(this.#enclave, randomBytes(16).toString('hex'));
          if (att.statusCode === 200 && att.document) {
            await db.query('INSERT INTO receipt_keys (enclave_key, document, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [key, att.document, Date.now()]);
          }
        }
      }
      const after = this.#cursor.get(key)!;
      if (probe.seq <= after) return stored;
      const page = await receiptChain(this.#enclave, after);
      if (page.enclaveKey !== key || page.receipts.length === 0) return stored;
      // One transaction per page (a receipt per answer must not cost a commit each), on the audit
      // lane: receipts are written beside the audit trail, never on the pool a kill needs.
      await (db.lane?.('audit') ?? db).transaction(async (tx) => {
        // Hosts sharing one enclave (a rolling restart runs two on one parent instance) collect the
        // same pages, and a receipt stored twice is what the verifier names a replay: they store a
        // receipt key's pages one at a time (SQLite has one writer anyway), each receipt once.
        if (tx.engine === 'postgres') await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`usage_receipts:${key}`]);
        for (const signed of page.receipts) {
          const r = signed.receipt;
          await tx.query(STORE_RECEIPT, [
            `rcp_${randomBytes(10).toString('hex')}`, key, r.seq, r.connectionId, r.day, JSON.stringify(signed), Date.now(),
          ]);
        }
      });
      stored += page.receipts.length;
      this.#cursor.set(key, page.receipts.at(-1)!.receipt.seq);
    }
  }

  /** The running enclave's head signed over `nonce` (hex) and the connections named, for the verifier's freshness check. */
  async head(nonce: string, connections: string[]): Promise<SignedReceiptHead | null> {
    return (await receiptChain(this.#enclave, Number.MAX_SAFE_INTEGER, nonce, connections)).head ?? null;
  }

  /** The stored attestation document (base64) that names receipt key `key`. */
  async attestationOf(key: string): Promise<string | undefined> {
    const [a] = await this.#store.db.query('SELECT document FROM receipt_keys WHERE enclave_key = $1', [key]);
    return a ? (a.document as string) : undefined;
  }

  /** Stored receipts, their keys' attestation documents and the host's totals for UTC days from..to (and connection). */
  async evidence(from: number, to: number, connectionId?: string): Promise<Omit<ReceiptEvidence, 'head'>> {
    const db = this.#store.db;
    const byConn = connectionId ? ' AND connection_id = $3' : '';
    const params = connectionId ? [from, to, connectionId] : [from, to];
    const rows = await db.query(`SELECT signed FROM usage_receipts WHERE day >= $1 AND day <= $2${byConn} ORDER BY enclave_key, seq`, params);
    const receipts = rows.map((r) => JSON.parse(r.signed as string) as SignedUsageReceipt);
    const keys = [...new Set(receipts.map((r) => r.enclaveKey))];
    const attestations: Record<string, string> = {};
    for (const k of keys) {
      const [a] = await db.query('SELECT document FROM receipt_keys WHERE enclave_key = $1', [k]);
      if (a) attestations[k] = a.document as string;
    }
    const hostRows = await db.query(
      `SELECT connection_id, at, tokens_in, tokens_out FROM audit_log WHERE at >= $1 AND at < $2 AND connection_id IS NOT NULL${connectionId ? ' AND connection_id = $3' : ''}`,
      connectionId ? [from * DAY_MS, (to + 1) * DAY_MS, connectionId] : [from * DAY_MS, (to + 1) * DAY_MS],
    );
    const totals = new Map<string, { connectionId: string; day: number; requests: number; tokens: number }>();
    for (const r of hostRows) {
      const day = Math.floor(Number(r.at) / DAY_MS);
      const id = `${r.connection_id as string}\u0000${day}`;
      const t = totals.get(id) ?? { connectionId: r.connection_id as string, day, requests: 0, tokens: 0 };
      t.requests += 1;
      t.tokens += Number(r.tokens_in) + Number(r.tokens_out);
      totals.set(id, t);
    }
    return { days: { from, to }, receipts, attestations, host: [...totals.values()] };
  }
}

/** Collects receipts every `pollMs` (a failed pull is retried at the next tick; nothing is lost while the enclave keeps them). */
export async function receiptCollectorPlugin(app: FastifyInstance, options: { collector: ReceiptCollector; pollMs: number }): Promise<void> {
  const timer = setInterval(() => {
    options.collector.collect().catch(() => undefined);
  }, options.pollMs);
  timer.unref();
  app.addHook('onClose', async () => {
    clearInterval(timer);
    await options.collector.collect().catch(() => undefined);
  });
}
