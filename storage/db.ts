/**
 * The two storage engines behind one small SQL interface: PostgreSQL (`pg` pool, LISTEN/NOTIFY
 * for cross-instance cache invalidation) and the embedded default, SQLite via node:sqlite (WAL,
 * one file). Statements are written once in the subset both understand — `$n` placeholders,
 * TEXT/BIGINT/INTEGER columns, `ON CONFLICT`, `RETURNING` — and times are epoch milliseconds.
 *
 * Lanes: on PostgreSQL, spend and audit writes run on pools of their own (`db.lane('spend')`,
 * `db.lane('audit')`), small and bounded, with statement, lock and idle-in-transaction timeouts.
 * Key lookups, admin writes (kill, revoke, locks) and NOTIFY use the main pool, and LISTEN has
 * its own connection, so no amount of metering traffic — however slow, blocked or failing — can
 * take the connections a kill needs. SQLite has one writer and no pool: a lane is the same handle.
 */
import { createRequire } from 'node:module';
import { DatabaseSync } from 'node:sqlite';
import type pg from 'pg';

/**
 * `pg` (with pg-protocol, pg-types: 27 modules) is loaded by the first `openPostgres`, not by
 * importing this module: hosts and shareholders on SQLite never use it (issue 22, no module loaded
 * where it is not used). A synchronous require keeps `openPostgres` synchronous and its errors
 * where they were; `pg` is CommonJS, so this is the very object `import pg from 'pg'` gave.
 */
const requireModule = createRequire(import.meta.url);

export type SqlValue = string | number | bigint | null;
export type Row = Record<string, unknown>;

/** Write traffic kept apart from key lookups and admin writes (see the module header). */
export type Lane = 'spend' | 'audit';

export interface SqlDb {
  readonly engine: 'sqlite' | 'postgres';
  /**
   * The handle for one lane's traffic: its own bounded pool on PostgreSQL, this handle on SQLite.
   * Optional so that test doubles need not provide it (callers fall back to the handle itself).
   * A lane belongs to its parent: its `close()` does nothing, the parent's closes it.
   */
  lane?(name: Lane): SqlDb;
  query<T extends Row = Row>(sql: string, params?: SqlValue[]): Promise<T[]>;
  exec(sql: string): Promise<void>;
  /** Runs `fn` in one transaction (serialised per process for SQLite). */
  transaction<T>(fn: (db: SqlDb) => Promise<T>): Promise<T>;
  /** Cross-instance signal (PostgreSQL NOTIFY); in-process only for SQLite. */
  notify(channel: string, payload: string): Promise<void>;
  listen(channel: string, onMessage: (payload: string) => void): Promise<void>;
  close(): Promise<void>;
}

/**
 * Rows of values as one multi-row `VALUES` list, `($1, $2), ($3, $4)`, and its parameters in
 * order: many rows in one statement and one round trip (PostgreSQL; SQLite binds thousands of
 * numbered parameters in quadratic time, so it takes one prepared row at a time instead).
 */
export function valuesList(rows: SqlValue[][]): { tuples: string; params: SqlValue[] } {
  const params: SqlValue[] = [];
  const tuples = rows.map((values) => {
    const start = params.length;
    params.push(...values);
    return `(${values.map((_, i) => `$${start + i + 1}`).join(', ')})`;
  });
  return { tuples: tuples.join(', '), params };
}

/** `$1` → `?1`: SQLite's numbered parameters bind positionally like PostgreSQL's. */
function toSqlite(sql: string): string {
  return sql.replace(/\$(\d+)/g, '?$1');
}

export function openSqlite(path: string): SqlDb {
  const db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;');
  const statements = new Map<string, ReturnType<DatabaseSync['prepare']>>();
  const listeners = new Map<string, Array<(p: string) => void>>();
  type Pending = { fn: (d: SqlDb) => Promise<unknown>; resolve: (v: unknown) => void; reject: (e: unknown) => void };
  let queue: Pending[] = [];
  let draining = false;
  // Savepoint statements run once per transaction of a batch: prepared once, not parsed each time.
  const savepoint = { open: db.prepare('SAVEPOINT sg_tx'), release: db.prepare('RELEASE sg_tx'), undo: db.prepare('ROLLBACK TO sg_tx') };
  const drain = async () => {
    draining = true;
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
      try {
        db.exec('BEGIN IMMEDIATE');
      } catch (e) {
        for (const p of batch) p.reject(e);
        continue;
      }
      // A batch of one needs no savepoint: its failure rolls back the whole transaction.
      const alone = batch.length === 1;
      let failed = false;
      for (const p of batch) {
        if (!alone) savepoint.open.run();
        try {
          const value = await p.fn(inTransaction);
          if (!alone) savepoint.release.run();
          outcomes.push({ ok: true, value });
        } catch (error) {
          if (!alone) {
            savepoint.undo.run();
            savepoint.release.run();
          } else failed = true;
          outcomes.push({ ok: false, error });
        }
      }
      try {
        db.exec(failed ? 'ROLLBACK' : 'COMMIT');
      } catch (e) {
        try {
          db.exec('ROLLBACK');
        } catch {
          // already rolled back
        }
        for (const p of batch) p.reject(e);
        continue;
      }
      batch.forEach((p, i) => {
        const o = outcomes[i]!;
        if (o.ok) p.resolve(o.value);
        else p.reject(o.error);
      });
    }
    draining = false;
  };
  const prepared = (sql: string) => {
    let s = statements.get(sql);
    if (!s) {
      s = db.prepare(toSqlite(sql));
      statements.set(sql, s);
    }
    return s;
  };
  const run = <T extends Row>(sql: string, params: SqlValue[]): T[] => {
    const stmt = prepared(sql);
    return (stmt.columns().length > 0 ? stmt.all(...params) : (stmt.run(...params), [])) as T[];
  };
  /**
   * One connection serves everything, so a statement issued outside any transaction while a
   * group-commit batch is open would run inside that batch — and vanish if the batch rolls back
   * (a refused reservation, a failed admin write), after its caller was told it succeeded. Writes
   * then go through the group commit as a transaction of their own; reads run at once (inside a
   * transaction's callback, code may read through the top-level handle).
   */
  const isRead = (sql: string) => /^\s*(select|pragma|explain)\b/i.test(sql);
  const api: SqlDb = {
    engine: 'sqlite',
    async query<T extends Row>(sql: string, params: SqlValue[] = []) {
      if (db.isTransaction && !isRead(sql)) return api.transaction((tx) => tx.query<T>(sql, params));
      return run<T>(sql, params);
    },
    async exec(sql) {
      if (db.isTransaction) return api.transaction((tx) => tx.exec(sql));
      db.exec(sql);
    },
    transaction<T>(fn: (d: SqlDb) => Promise<T>): Promise<T> {
      // Group commit: transactions asked for in the same turn of the event loop, or while one
      // batch runs, form one batch, run one after another inside one BEGIN … COMMIT, each in its
      // own savepoint (so each is still atomic, and a failing one rolls back alone). Results are
      // released only after the COMMIT. The first batch waits for the end of the current turn
      // (setImmediate): every request that arrived in one poll of the sockets then reserves in
      // one commit instead of one commit each (issue 22: a commit per request was the host's
      // largest SQLite cost under load).
      return new Promise<T>((resolve, reject) => {
        queue.push({ fn: fn as (d: SqlDb) => Promise<unknown>, resolve: resolve as (v: unknown) => void, reject });
        if (!draining) {
          draining = true;
          setImmediate(() => void drain());
        }
      });
    },
    async notify(channel, payload) {
      for (const l of listeners.get(channel) ?? []) l(payload);
    },
    async listen(channel, onMessage) {
      listeners.set(channel, [...(listeners.get(channel) ?? []), onMessage]);
    },
    // One writer at a time and no pool to exhaust: every lane is this handle.
    lane: () => api,
    async close() {
      db.close();
    },
  };
  /** The handle a transaction's callback gets: statements run in the open transaction, nesting is inline. */
  const inTransaction: SqlDb = {
    ...api,
    async query<T extends Row>(sql: string, params: SqlValue[] = []) {
      return run<T>(sql, params);
    },
    async exec(sql) {
      db.exec(sql);
    },
    transaction: (fn) => fn(inTransaction),
  };
  return api;
}

export interface LaneOptions {
  /** Connections in the lane's pool. */
  max: number;
  /** Server-side limit on one statement (`statement_timeout`). */
  statementTimeoutMs: number;
  /** Server-side limit on waiting for a row or table lock (`lock_timeout`). */
  lockTimeoutMs: number;
  /** A transaction left open this long (a stalled client) is ended by the server, releasing its locks. */
  idleInTransactionMs: number;
  /** Waiting for a free connection of the lane (or for a new one to connect) fails after this. */
  acquireTimeoutMs: number;
}

/**
 * Defaults sized for two cores and PostgreSQL's default 100 connections shared by a few hosts:
 * main 20 + spend 8 + audit 2 + LISTEN 1 per host. Spend statements are single-row and short, so
 * a 3 s lock wait or a 10 s statement means something is wrong: fail it (settlement retries it).
 */
export const DEFAULT_LANES: Record<Lane, LaneOptions> = {
  spend: { max: 8, statementTimeoutMs: 10_000, lockTimeoutMs: 3_000, idleInTransactionMs: 15_000, acquireTimeoutMs: 10_000 },
  audit: { max: 2, statementTimeoutMs: 30_000, lockTimeoutMs: 5_000, idleInTransactionMs: 30_000, acquireTimeoutMs: 10_000 },
};

export interface PostgresOptions {
  connectionString: string;
  /** Schema to use (created if missing); tests use a fresh one each. */
  schema?: string;
  max?: number;
  /** Per-lane pool settings (defaults: DEFAULT_LANES). */
  lanes?: Partial<Record<Lane, Partial<LaneOptions>>>;
  /** `application_name` of the main pool; lanes add `/<lane>` (operators see who holds what). */
  applicationName?: string;
}

export function openPostgres(options: PostgresOptions): SqlDb {
  const schema = options.schema;
  if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error('schema name must be a lower-case identifier');
  const applicationName = options.applicationName ?? 'securegate';
  const pg = requireModule('pg') as typeof import('pg').default;
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 20,
    application_name: applicationName,
    ...(schema ? { options: `-c search_path=${schema}` } : {}),
  });
  // BIGINT columns hold epoch milliseconds and money in micro-dollars: safe as JS numbers.
  pg.types.setTypeParser(20, (v) => Number(v));
  // An idle pooled client whose server went away (restart, failover) must not crash the process;
  // the pool replaces it on the next query.
  pool.on('error', () => undefined);
  let listener: pg.Client | undefined;
  let closed = false;
  const handlers = new Map<string, Array<(p: string) => void>>();

  /**
   * The LISTEN connection, re-established after the server goes away. Notifications sent while
   * it was down are lost, so every handler then gets '*' ("anything may have changed").
   */
  async function connectListener(): Promise<void> {
    const client = new pg.Client({ connectionString: options.connectionString });
    client.on('notification', (msg) => {
      for (const h of handlers.get(msg.channel) ?? []) h(msg.payload ?? '');
    });
    const reconnect = () => {
      if (closed || listener !== client) return;
      listener = undefined;
      const retry = (delay: number) =>
        setTimeout(() => {
          if (closed) return;
          connectListener().then(
            () => {
              for (const hs of handlers.values()) for (const h of hs) h('*');
            },
            () => retry(Math.min(delay * 2, 5_000)),
          );
        }, delay).unref();
      retry(200);
    };
    client.on('error', reconnect);
    client.on('end', reconnect);
    await client.connect();
    for (const name of handlers.keys()) await client.query(`LISTEN "${name}"`);
    listener = client;
  }
  const ready = schema ? pool.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`).then(() => undefined) : Promise.resolve();
  const channelName = (c: string) => (schema ? `${schema}_${c}` : c);

  const lanes = new Map<Lane, { pool: pg.Pool; api: SqlDb }>();
  function openLane(name: Lane): SqlDb {
    const existing = lanes.get(name);
    if (existing) return existing.api;
    const o = { ...DEFAULT_LANES[name], ...options.lanes?.[name] };
    const settings = [
      ...(schema ? [`-c search_path=${schema}`] : []),
      `-c statement_timeout=${o.statementTimeoutMs}`,
      `-c lock_timeout=${o.lockTimeoutMs}`,
      `-c idle_in_transaction_session_timeout=${o.idleInTransactionMs}`,
    ];
    const lanePool = new pg.Pool({
      connectionString: options.connectionString,
      max: o.max,
      application_name: `${applicationName}/${name}`,
      options: settings.join(' '),
      connectionTimeoutMillis: o.acquireTimeoutMs,
      // A server that stops answering (network partition) is not covered by statement_timeout.
      query_timeout: o.statementTimeoutMs + 5_000,
    });
    lanePool.on('error', () => undefined);
    const api = wrap(lanePool, lanePool);
    lanes.set(name, { pool: lanePool, api });
    return api;
  }

  function wrap(owner: pg.Pool, client: pg.Pool | pg.PoolClient): SqlDb {
    const api: SqlDb = {
      engine: 'postgres',
      async query<T extends Row>(sql: string, params: SqlValue[] = []) {
        await ready;
        return (await client.query(sql, params as unknown[])).rows as T[];
      },
      async exec(sql) {
        await api.query(sql);
      },
      async transaction<T>(fn: (d: SqlDb) => Promise<T>): Promise<T> {
        await ready;
        const c = await owner.connect();
        // A checked-out client has no pool error handler: a server going away mid-transaction
        // must fail this transaction, not crash the process.
        const swallow = () => undefined;
        c.on('error', swallow);
        // A connection that cannot even roll back (server gone, query timed out) is discarded,
        // not handed to the next caller in an unknown state.
        let broken: Error | undefined;
        try {
          await c.query('BEGIN');
          const result = await fn(wrap(owner, c));
          await c.query('COMMIT');
          return result;
        } catch (e) {
          await c.query('ROLLBACK').catch((rollbackError: Error) => {
            broken = rollbackError;
          });
          throw e;
        } finally {
          c.off('error', swallow);
          c.release(broken);
        }
      },
      async notify(channel, payload) {
        await pool.query('SELECT pg_notify($1, $2)', [channelName(channel), payload]);
      },
      async listen(channel, onMessage) {
        await ready;
        const name = channelName(channel);
        const isNew = !handlers.has(name);
        handlers.set(name, [...(handlers.get(name) ?? []), onMessage]);
        if (!listener) await connectListener();
        else if (isNew) await listener.query(`LISTEN "${name}"`);
      },
      lane: openLane,
      async close() {
        // A lane (or a transaction's handle) belongs to the main handle, which closes everything.
        if (owner !== pool || client !== pool || closed) return;
        closed = true;
        await listener?.end().catch(() => undefined);
        await Promise.all([...lanes.values()].map((l) => l.pool.end()));
        await pool.end();
      },
    };
    return api;
  }
  return wrap(pool, pool);
}
