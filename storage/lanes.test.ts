/**
 * Lanes: spend and audit writes run on PostgreSQL pools of their own with server-side timeouts, so
 * metering traffic that is blocked or slow never takes the connections key lookups and admin
 * writes (a kill) need. On SQLite a lane is the handle itself.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../test/pg.ts';
import { openPostgres, openSqlite, type SqlDb } from './db.ts';

describe.skipIf(skipPostgres)('lanes on PostgreSQL', () => {
  const schema = uniqueSchema('sg_lanes');
  const applicationName = `sg-lanes-${process.pid}`;
  let db: SqlDb;
  let blocker: pg.Client;

  beforeAll(async () => {
    db = openPostgres({
      connectionString: TEST_DATABASE_URL,
      schema,
      applicationName,
      lanes: { spend: { max: 3, lockTimeoutMs: 1_500 } },
    });
    await db.exec('CREATE TABLE counters (id TEXT PRIMARY KEY, n BIGINT NOT NULL)');
    await db.query("INSERT INTO counters (id, n) VALUES ('hot', 0)");
    blocker = new pg.Client({ connectionString: TEST_DATABASE_URL, options: `-c search_path=${schema}` });
    await blocker.connect();
  });
  afterAll(async () => {
    await blocker?.end();
    await db?.close();
    await dropSchema(schema);
  });

  it('gives a lane its own lock and statement timeouts, leaving the main pool without them', async () => {
    const [laneLock] = await db.lane!('spend').query('SHOW lock_timeout');
    const [laneStatement] = await db.lane!('spend').query('SHOW statement_timeout');
    const [mainLock] = await db.query('SHOW lock_timeout');
    expect(laneLock!.lock_timeout).toBe('1500ms');
    expect(laneStatement!.statement_timeout).toBe('10s');
    expect(mainLock!.lock_timeout).toBe('0');
  });

  it('answers main-pool queries at once while every spend connection waits on a lock', async () => {
    await blocker.query("BEGIN; SELECT * FROM counters WHERE id = 'hot' FOR UPDATE");
    const spend = db.lane!('spend');
    // Twice the lane's size: three wait on the lock, three more wait for a connection.
    const blocked = Array.from({ length: 6 }, () =>
      spend.transaction((tx) => tx.query("UPDATE counters SET n = n + 1 WHERE id = 'hot'")).then(
        () => 'written',
        (e: { code?: string }) => e.code ?? 'failed',
      ),
    );
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    await db.query('SELECT 1 AS ok');
    await db.transaction((tx) => tx.query("UPDATE counters SET n = n WHERE id <> 'hot'"));
    await db.notify('sg_lane_test', 'x');
    expect(performance.now() - t0).toBeLessThan(500);
    await blocker.query('ROLLBACK');
    // Once the lock is gone the waiting writes go through (none waited past its lock timeout).
    expect(await Promise.all(blocked)).toEqual(Array(6).fill('written'));
  });

  it('fails a lane statement that waits on a lock longer than its lock timeout (55P03)', async () => {
    await blocker.query("BEGIN; SELECT * FROM counters WHERE id = 'hot' FOR UPDATE");
    try {
      await expect(db.lane!('spend').query("UPDATE counters SET n = n + 1 WHERE id = 'hot'")).rejects.toMatchObject({ code: '55P03' });
    } finally {
      await blocker.query('ROLLBACK');
    }
  });

  it('closes the lanes with the main handle and leaves no connection open', async () => {
    const other = openPostgres({ connectionString: TEST_DATABASE_URL, schema, applicationName: `${applicationName}-close` });
    await other.lane!('spend').query('SELECT 1');
    await other.lane!('audit').query('SELECT 1');
    await other.lane!('spend').close(); // a lane's close is the parent's business: nothing happens
    await other.lane!('spend').query('SELECT 1');
    await other.close();
    // A backend leaves pg_stat_activity a moment after its client hung up: wait for that (up to
    // 5 s), which a connection left open never does.
    const open = async () => (await blocker.query("SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE $1 || '%'", [`${applicationName}-close`])).rows[0].n as number;
    let n = await open();
    for (const deadline = Date.now() + 5_000; n > 0 && Date.now() < deadline; n = await open()) await new Promise((r) => setTimeout(r, 50));
    expect(n).toBe(0);
  });
});

describe('lanes on SQLite', () => {
  let dir: string;
  let db: SqlDb;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sg-lanes-'));
    db = openSqlite(join(dir, 'db.sqlite'));
  });
  afterAll(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('are the handle itself (one writer, nothing to saturate)', () => {
    expect(db.lane!('spend')).toBe(db);
    expect(db.lane!('audit')).toBe(db);
  });
});
