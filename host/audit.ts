/**
 * The audit trail: one row per request, allowed or refused — never a request or response body.
 * Rows are queued and written in batches off the hot path (every 200 ms or 200 rows); `close()`
 * flushes, so a clean shutdown loses nothing; a failed write is retried (database restarts).
 * Writes go through the database's `audit` lane (a pool of their own on PostgreSQL), so a slow or
 * absent audit write never holds a connection that key lookups or a kill need.
 */
import { newId } from './keys.ts';
import { valuesList, type SqlDb, type SqlValue } from '../storage/db.ts';

export interface AuditRow {
  at: number;
  requestId: string;
  keyId: string | null;
  projectId: string | null;
  connectionId: string | null;
  provider: string | null;
  modelRequested: string | null;
  modelResolved: string | null;
  tokensIn: number;
  tokensOut: number;
  tokensCached: number;
  costMicros: number;
  status: number;
  code: string | null;
  clientIp: string | null;
  city: string | null;
  deviceMatch: boolean | null;
  latencyMs: number;
  /** Method and path (no query: it can carry credentials), refused requests included. */
  endpoint?: string | null;
}

/** Rows held in memory while the database is unreachable (about 20 MB at most). */
const MAX_PENDING = 50_000;

const COLUMNS = ['id', 'at', 'request_id', 'key_id', 'project_id', 'connection_id', 'provider', 'model_requested', 'model_resolved', 'tokens_in', 'tokens_out', 'tokens_cached', 'cost_micros', 'status', 'code', 'client_ip', 'city', 'device_match', 'latency_ms', 'endpoint'];

/** `INSERT … VALUES <tuples> ON CONFLICT (id) DO NOTHING`: a batch's rows (PostgreSQL) or one row (SQLite). */
const insertRows = (tuples: string) => `INSERT INTO audit_log (${COLUMNS.join(', ')}) VALUES ${tuples} ON CONFLICT (id) DO NOTHING`;
const INSERT_ONE = insertRows(`(${COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`);

/** A row's values in COLUMNS order. */
function auditValues(r: AuditRow & { id: string }): SqlValue[] {
  return [
    r.id, r.at, r.requestId, r.keyId, r.projectId, r.connectionId, r.provider, r.modelRequested, r.modelResolved,
    r.tokensIn, r.tokensOut, r.tokensCached, r.costMicros, r.status, r.code, r.clientIp, r.city, r.deviceMatch === null ? null : r.deviceMatch ? 1 : 0, r.latencyMs, r.endpoint ?? null,
  ];
}

export class AuditWriter {
  readonly #db: SqlDb;
  readonly #onError: (e: Error) => void;
  #queue: Array<AuditRow & { id: string }> = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(db: SqlDb, onError: (e: Error) => void) {
    this.#db = db.lane?.('audit') ?? db;
    this.#onError = onError;
  }

  write(row: AuditRow): void {
    // The id is fixed now, not at each write attempt: a batch the database committed but whose
    // answer was lost (a restart mid-commit) is retried with the same ids and not doubled.
    this.#queue.push({ ...row, id: newId('aud') });
    if (this.#queue.length >= 200) void this.flush();
    else this.#timer ??= setTimeout(() => void this.flush(), 200);
  }

  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const rows = this.#queue;
    this.#queue = [];
    if (rows.length === 0) return this.#flushing;
    this.#flushing = this.#flushing.then(async () => {
      try {
        if (this.#db.engine === 'postgres') {
          // One statement, one round trip, for the whole batch.
          const { tuples, params } = valuesList(rows.map(auditValues));
          await this.#db.query(insertRows(tuples), params);
        } else {
          // SQLite: one prepared single-row statement per row, all in one transaction (through the
          // group commit: a bare statement would run inside whatever batch is open, and vanish with
          // it if that batch rolled back). A multi-row statement would be parsed afresh per batch
          // size, and binding its thousands of numbered parameters costs quadratic time in SQLite.
          await this.#db.transaction(async (tx) => {
            for (const r of rows) await tx.query(INSERT_ONE, auditValues(r));
          });
        }
      } catch (e) {
        // The database is away (restart, failover): keep the rows and try again, so none is lost
        // to an outage; beyond MAX_PENDING the oldest are dropped and reported.
        this.#onError(e as Error);
        this.#queue = [...rows, ...this.#queue];
        if (this.#queue.length > MAX_PENDING) {
          const dropped = this.#queue.length - MAX_PENDING;
          this.#queue = this.#queue.slice(dropped);
          this.#onError(new Error(`audit queue full: ${dropped} rows dropped`));
        }
        this.#timer ??= setTimeout(() => void this.flush(), 1_000);
      }
    });
    return this.#flushing;
  }

  /** Rows not yet written (queued or waiting for the database to come back). */
  get pending(): number {
    return this.#queue.length;
  }

  async close(): Promise<void> {
    await this.flush();
  }
}
