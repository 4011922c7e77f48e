/**
 * PostgreSQL for tests: the server at 127.0.0.1:5432 (trust auth, database `test`, or
 * SECUREGATE_TEST_DATABASE_URL). Each suite gets its own schema and drops it afterwards. Where no
 * server answers, suites skip with a visible reason — except under CI=true, where they must run.
 */
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import pg from 'pg';

export const TEST_DATABASE_URL = process.env.SECUREGATE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function probe(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (e) {
    return (e as Error).message;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const failure = await probe();
if (failure && process.env.CI === 'true') {
  throw new Error(`PostgreSQL at ${TEST_DATABASE_URL} is required under CI=true but is unreachable: ${failure}`);
}
if (failure) {
  process.stderr.write(`\n[skip] PostgreSQL tests skipped: ${TEST_DATABASE_URL} unreachable (${failure})\n`);
}

/** True when PostgreSQL tests must be skipped (never under CI). */
export const skipPostgres = failure !== undefined;

export function uniqueSchema(prefix: string): string {
  return `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/**
 * A database of its own (created from template0, dropped with FORCE afterwards), for tests that
 * read per-database statistics such as `pg_stat_database.deadlocks`, which schemas do not separate.
 */
export async function isolatedDatabase(prefix: string): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = uniqueSchema(prefix);
  await admin((c) => c.query(`CREATE DATABASE "${name}" TEMPLATE template0`));
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}

/**
 * Deadlocks PostgreSQL detected in `database` so far. Backends report statistics when they end
 * (and otherwise at most once a second while busy), so read this after closing the pools.
 */
export async function deadlocks(database: string): Promise<number> {
  const rows = await admin((c) => c.query('SELECT deadlocks FROM pg_stat_database WHERE datname = $1', [database]));
  return Number((rows.rows[0] as { deadlocks?: string } | undefined)?.deadlocks ?? 0);
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * A TCP relay in front of the test server that a test can cut (every connection through it is
 * destroyed and new ones are refused, as when the database host goes away) and restore.
 */
export async function cuttablePostgres(): Promise<{ url: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const target = new URL(TEST_DATABASE_URL);
  const sockets = new Set<Socket>();
  let open = true;
  const server = createServer((client) => {
    if (!open) return void client.destroy();
    const upstream = connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(TEST_DATABASE_URL);
  url.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: url.toString(),
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    restore() {
      open = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
