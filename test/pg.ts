/**
 * PostgreSQL for tests: the server at 127.0.0.1:5432 (trust auth, database `test`, or
 * SECUREGATE_TEST_DATABASE_URL). Each suite gets its own schema and drops it afterwards. Where no
 * server answers, suites skip with a visible reason — except under CI=true, where they must run.
 */
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
