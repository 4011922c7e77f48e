/**
 * The spend ledger on both engines: concurrent reservations never overshoot a cap, settlement
 * keeps counters exact, crashed reservations are reclaimed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cuttablePostgres, deadlocks, dropSchema, isolatedDatabase, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../test/pg.ts';
import { openPostgres, openSqlite, type SqlDb } from '../storage/db.ts';
import { SpendLedger, utcDay } from './spend.ts';
import { HostStore } from './store.ts';

const engines = [
  { name: 'sqlite', skip: false },
  { name: 'postgres', skip: skipPostgres },
];

for (const engine of engines) {
  describe.skipIf(engine.skip)(`spend ledger on ${engine.name}`, () => {
    let db: SqlDb;
    let ledger: SpendLedger;
    let cleanup: () => Promise<void>;

    beforeAll(async () => {
      if (engine.name === 'sqlite') {
        const dir = await mkdtemp(join(tmpdir(), 'sg-spend-'));
        db = openSqlite(join(dir, 'h.sqlite'));
        cleanup = () => rm(dir, { recursive: true, force: true });
      } else {
        const schema = uniqueSchema('sg_spend');
        db = openPostgres({ connectionString: TEST_DATABASE_URL, schema, max: 20 });
        cleanup = () => dropSchema(schema);
      }
      await new HostStore(db).migrate();
      ledger = new SpendLedger(db);
    });
    afterAll(async () => {
      await db?.close();
      await cleanup?.();
    });

    it('charges uncapped requests (no reservation) into the same counters a settle would', async () => {
      const now = Date.now();
      const day = utcDay(now);
      await Promise.all(Array.from({ length: 50 }, (_, i) => ledger.charge('k-free', 'p-free', day, 1000 + i)));
      const reserved = await ledger.reserve({ keyId: 'k-free2', projectId: 'p-free', amount: 9999, keyDailyCap: null, keyLifetimeCap: null, projectDailyCap: null, now });
      if (!reserved.ok) throw new Error('reserve refused');
      await ledger.settle(reserved.reservationId, 500);
      const expected = 50 * 1000 + (49 * 50) / 2;
      expect(await ledger.counter('key', 'k-free', `d:${day}`)).toMatchObject({ spent: expected, reserved: 0, requests: 50 });
      expect(await ledger.counter('key', 'k-free', 'life')).toMatchObject({ spent: expected, reserved: 0 });
      expect(await ledger.counter('keyreq', 'k-free', `d:${day}`)).toMatchObject({ spent: 50, reserved: 0 });
      expect(await ledger.counter('project', 'p-free', `d:${day}`)).toMatchObject({ spent: expected + 500, reserved: 0, requests: 51 });
      const settled = await ledger.charge('k-free', 'p-free', day, 7);
      expect(settled.keyDay).toMatchObject({ before: expected, after: expected + 7 });
    });

    it('writes the settlements asked for in one turn of the event loop in one transaction, each with its own before/after', async () => {
      const now = Date.now();
      const day = `d:${utcDay(now)}`;
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) {
        const r = await ledger.reserve({ ...uncapped('k-turn', 'p-turn'), amount: 100, now });
        if (!r.ok) throw new Error('reserve refused');
        ids.push(r.reservationId);
      }
      let transactions = 0;
      const counting: SqlDb = {
        ...db,
        lane: () => counting,
        transaction: (fn) => {
          transactions++;
          return db.transaction(fn);
        },
      };
      const batched = new SpendLedger(counting);
      const settled = await Promise.all(ids.map((id, i) => batched.settle(id, 10 + i)));
      expect(transactions).toBe(1);
      let spent = 0;
      settled.forEach((s, i) => {
        expect(s.keyDay).toMatchObject({ before: spent, after: spent + 10 + i });
        spent += 10 + i;
      });
      expect(await ledger.counter('key', 'k-turn', day)).toEqual({ spent, reserved: 0, requests: 12 });
      expect(await ledger.counter('keyreq', 'k-turn', day)).toEqual({ spent: 12, reserved: 0, requests: 12 });
    });

    it('lets 200 concurrent reservations fill a cap exactly, never beyond', async () => {
      const now = Date.now();
      const cap = 1_000_000;
      const amount = 30_000; // 33 fit
      const results = await Promise.all(
        Array.from({ length: 200 }, () => ledger.reserve({ keyId: 'k-conc', projectId: 'p1', amount, keyDailyCap: cap, keyLifetimeCap: null, projectDailyCap: null, now })),
      );
      const granted = results.filter((r) => r.ok);
      expect(granted).toHaveLength(Math.floor(cap / amount));
      const c = await ledger.counter('key', 'k-conc', `d:${utcDay(now)}`);
      expect(c.reserved).toBe(granted.length * amount);
      // Settle each for less than reserved: counters equal the sum of settled costs exactly.
      let settled = 0;
      await Promise.all(
        granted.map(async (r, i) => {
          const cost = 10_000 + i;
          settled += cost;
          if (r.ok) await ledger.settle(r.reservationId, cost);
        }),
      );
      const after = await ledger.counter('key', 'k-conc', `d:${utcDay(now)}`);
      expect(after).toEqual({ spent: settled, reserved: 0, requests: granted.length });
      expect((await ledger.counter('key', 'k-conc', 'life')).spent).toBe(settled);
      expect((await ledger.counter('project', 'p1', `d:${utcDay(now)}`)).spent).toBe(settled);
    });

    it('refuses when any capped counter would overflow and changes nothing', async () => {
      const now = Date.now();
      const r = await ledger.reserve({ keyId: 'k-proj', projectId: 'p-small', amount: 600, keyDailyCap: 10_000, keyLifetimeCap: 10_000, projectDailyCap: 500, now });
      expect(r).toEqual({ ok: false, scope: 'project', period: `d:${utcDay(now)}` });
      expect(await ledger.counter('key', 'k-proj', `d:${utcDay(now)}`)).toEqual({ spent: 0, reserved: 0, requests: 0 });
      const life = await ledger.reserve({ keyId: 'k-life', projectId: 'p2', amount: 600, keyDailyCap: null, keyLifetimeCap: 500, projectDailyCap: null, now });
      expect(life).toMatchObject({ ok: false, scope: 'key', period: 'life' });
    });

    it('charges a crashed reservation its bound when the sweep reclaims it, and a late settle corrects it to the real cost', async () => {
      const now = Date.now();
      const r = await ledger.reserve({ keyId: 'k-crash', projectId: 'p3', amount: 5_000, keyDailyCap: 5_000, keyLifetimeCap: null, projectDailyCap: null, now });
      expect(r.ok).toBe(true);
      expect((await ledger.reserve({ keyId: 'k-crash', projectId: 'p3', amount: 1, keyDailyCap: 5_000, keyLifetimeCap: null, projectDailyCap: null, now })).ok).toBe(false);
      expect(await ledger.reclaimExpired(now + 16 * 60_000)).toBe(1);
      // The crash rule: the upper bound is charged and the request counted, nothing stays reserved.
      expect(await ledger.counter('key', 'k-crash', `d:${utcDay(now)}`)).toEqual({ spent: 5_000, reserved: 0, requests: 1 });
      expect(await ledger.counter('keyreq', 'k-crash', `d:${utcDay(now)}`)).toEqual({ spent: 1, reserved: 0, requests: 1 });
      if (r.ok) await ledger.settle(r.reservationId, 1_234);
      expect(await ledger.counter('key', 'k-crash', `d:${utcDay(now)}`)).toEqual({ spent: 1_234, reserved: 0, requests: 1 });
      expect(await ledger.counter('keyreq', 'k-crash', `d:${utcDay(now)}`)).toEqual({ spent: 1, reserved: 0, requests: 1 });
      expect((await ledger.reserve({ keyId: 'k-crash', projectId: 'p3', amount: 3_000, keyDailyCap: 5_000, keyLifetimeCap: null, projectDailyCap: null, now })).ok).toBe(true);
    });

    it('charges an expired uncapped reservation its bound on reclaim, and a late settle corrects it', async () => {
      const now = Date.now();
      const day = `d:${utcDay(now)}`;
      const r = await ledger.reserve({ ...uncapped('k-unc-crash', 'p-unc-crash'), amount: 7_000, now });
      if (!r.ok) throw new Error('reserve refused');
      await ledger.reclaimExpired(now + 16 * 60_000);
      expect(await ledger.counter('key', 'k-unc-crash', day)).toEqual({ spent: 7_000, reserved: 0, requests: 1 });
      await ledger.settle(r.reservationId, 2_000);
      expect(await ledger.counter('key', 'k-unc-crash', day)).toEqual({ spent: 2_000, reserved: 0, requests: 1 });
      expect(await ledger.counter('project', 'p-unc-crash', day)).toEqual({ spent: 2_000, reserved: 0, requests: 1 });
    });

    // PostgreSQL only: SQLite's group commit batches a turn's reservations already (storage/sqlite-writes.test.ts).
    if (engine.name === 'postgres') it('inserts the uncapped reservations asked for in one turn in one statement per 200 rows (one round trip each)', async () => {
      const now = Date.now();
      const reserved = await Promise.all(Array.from({ length: 250 }, (_, i) => ledger.reserve({ ...uncapped(`k-rows-${i % 5}`, 'p-rows'), amount: 1_000, now })));
      const ids = reserved.map((r) => (r.ok ? r.reservationId : ''));
      expect(ids.every((id) => id.startsWith('res_'))).toBe(true);
      // Rows written by one statement share its transaction id (xmin): 250 rows, two statements.
      const rows = await db.query<{ id: string; xmin: string }>('SELECT id, xmin::text AS xmin FROM reservations WHERE id = ANY($1)', [ids as unknown as string]);
      expect(rows).toHaveLength(250);
      expect(new Set(rows.map((r) => r.xmin)).size).toBe(2);
      await Promise.all(ids.map((id) => ledger.settle(id, 10)));
      expect(await ledger.counter('project', 'p-rows', `d:${utcDay(now)}`)).toMatchObject({ spent: 2_500, reserved: 0, requests: 250 });
    });

    // PostgreSQL only: SQLite has no round trips, and deletes a batch's rows one prepared statement each.
    if (engine.name === 'postgres') it("deletes a settlement batch's reservation rows in one statement, and an unknown id in it fails alone", async () => {
      const now = Date.now();
      const statements: string[] = [];
      const counting = (d: SqlDb): SqlDb => ({
        ...d,
        query: (sql, params) => (statements.push(sql), d.query(sql, params)),
        transaction: (fn) => d.transaction((tx) => fn(counting(tx))),
        lane: undefined,
      });
      const counted = new SpendLedger(counting(db));
      const reserved = await Promise.all(Array.from({ length: 150 }, (_, i) => counted.reserve({ ...uncapped(`k-del-${i % 3}`, 'p-del'), amount: 1_000, now })));
      const ids = reserved.map((r) => (r.ok ? r.reservationId : ''));
      statements.length = 0;
      const settled = await Promise.allSettled([...ids.map((id) => counted.settle(id, 10)), counted.settle('res_never_reserved', 10)]);
      expect(settled.slice(0, 150).every((s) => s.status === 'fulfilled')).toBe(true);
      expect(settled[150]).toMatchObject({ status: 'rejected', reason: { code: 'reservation_unknown' } });
      expect(statements.filter((q) => q.startsWith('DELETE FROM reservations'))).toHaveLength(1);
      expect(await ledger.counter('project', 'p-del', `d:${utcDay(now)}`)).toEqual({ spent: 1_500, reserved: 0, requests: 150 });
      expect(await db.query('SELECT id FROM reservations WHERE key_id LIKE $1', ['k-del-%'])).toEqual([]);
    });

    it('reserves an uncapped request without touching a counter, and its settlement charges every counter', async () => {
      const now = Date.now();
      const day = `d:${utcDay(now)}`;
      const r = await ledger.reserve({ ...uncapped('k-unc', 'p-unc'), amount: 90_000, now });
      if (!r.ok) throw new Error('reserve refused');
      for (const [scope, id, period] of [['key', 'k-unc', day], ['key', 'k-unc', 'life'], ['project', 'p-unc', day], ['keyreq', 'k-unc', day]] as const) {
        expect(await ledger.counter(scope, id, period)).toEqual({ spent: 0, reserved: 0, requests: 0 });
      }
      const settled = await ledger.settle(r.reservationId, 1_500);
      expect(settled.keyDay).toMatchObject({ before: 0, after: 1_500 });
      expect(await ledger.counter('key', 'k-unc', day)).toEqual({ spent: 1_500, reserved: 0, requests: 1 });
      expect(await ledger.counter('key', 'k-unc', 'life')).toEqual({ spent: 1_500, reserved: 0, requests: 1 });
      expect(await ledger.counter('project', 'p-unc', day)).toEqual({ spent: 1_500, reserved: 0, requests: 1 });
      expect(await ledger.counter('keyreq', 'k-unc', day)).toEqual({ spent: 1, reserved: 0, requests: 1 });
    });

    it('reports before/after spend per settlement that tile the day without overlap, however settlements are batched', async () => {
      const now = Date.now();
      const reserved = await Promise.all(Array.from({ length: 60 }, () => ledger.reserve({ ...uncapped('k-tile', 'p-tile'), amount: 0, now })));
      const results = await Promise.all(reserved.map((r, i) => (r.ok ? ledger.settle(r.reservationId, 10 + i) : Promise.reject(new Error('refused')))));
      // Sorted by `before`, each settlement starts where the previous one ended: a budget line is crossed by exactly one.
      const spans = results.map((r) => r.keyDay).sort((a, b) => a.before - b.before);
      let at = 0;
      for (const span of spans) {
        expect(span.before).toBe(at);
        at = span.after;
      }
      expect(at).toBe((await ledger.counter('key', 'k-tile', `d:${utcDay(now)}`)).spent);
    });

    it('counts a settlement once: a second settle joins the first, a later one is refused as reservation_unknown', async () => {
      const now = Date.now();
      const r = await ledger.reserve({ ...uncapped('k-twice', 'p-twice'), amount: 0, now });
      if (!r.ok) throw new Error('reserve refused');
      await Promise.all([ledger.settle(r.reservationId, 700), ledger.settle(r.reservationId, 700)]);
      await expect(ledger.settle(r.reservationId, 700)).rejects.toMatchObject({ code: 'reservation_unknown' });
      expect(await ledger.counter('key', 'k-twice', `d:${utcDay(now)}`)).toEqual({ spent: 700, reserved: 0, requests: 1 });
    });

    it('refuses a cost that is not a non-negative integer of micro-dollars with invalid_amount', async () => {
      const r = await ledger.reserve({ ...uncapped('k-bad', 'p-bad'), amount: 0, now: Date.now() });
      if (!r.ok) throw new Error('reserve refused');
      await expect(ledger.settle(r.reservationId, 1e300)).rejects.toMatchObject({ code: 'invalid_amount' });
      await expect(ledger.settle(r.reservationId, -1)).rejects.toMatchObject({ code: 'invalid_amount' });
      await expect(ledger.charge('k-bad', 'p-bad', utcDay(Date.now()), 0.5)).rejects.toMatchObject({ code: 'invalid_amount' });
      await expect(ledger.reserve({ ...uncapped('k-bad', 'p-bad'), amount: Number.NaN, now: Date.now() })).rejects.toMatchObject({ code: 'invalid_amount' });
      await ledger.settle(r.reservationId, 0);
    });

    it('retries a settlement the database did not take until it is written, counting it exactly once', async () => {
      const now = Date.now();
      // Two attempts fail before anything is written, the third commits but loses its answer.
      const flaky = failing(db, ['fail', 'fail', 'lose']);
      const errors: string[] = [];
      const shaky = new SpendLedger(flaky.db, { retryDelayMs: 5, onError: (e) => errors.push(e.message) });
      const capped = await ledger.reserve({ keyId: 'k-retry', projectId: 'p-retry', amount: 4_000, keyDailyCap: 10_000, keyLifetimeCap: null, projectDailyCap: null, now });
      if (!capped.ok) throw new Error('reserve refused');
      await shaky.settle(capped.reservationId, 2_500);
      expect(errors).toHaveLength(3);
      expect(await ledger.counter('key', 'k-retry', `d:${utcDay(now)}`)).toEqual({ spent: 2_500, reserved: 0, requests: 1 });
      expect(await ledger.counter('project', 'p-retry', `d:${utcDay(now)}`)).toEqual({ spent: 2_500, reserved: 0, requests: 1 });
      // The old call pattern (charge without a reservation) is as durable.
      flaky.plan.push('fail', 'lose');
      await shaky.charge('k-retry', 'p-retry', utcDay(now), 1_000);
      expect(await ledger.counter('key', 'k-retry', `d:${utcDay(now)}`)).toEqual({ spent: 3_500, reserved: 0, requests: 2 });
      expect(shaky.pendingSettlements).toBe(0);
      const [open] = await db.query("SELECT COUNT(*) AS n FROM reservations WHERE key_id = 'k-retry'");
      expect(Number(open!.n)).toBe(0);
    });

    it('leaves a reservation whose settlement is queued in this process to that settlement, whatever the sweep sees', async () => {
      const now = Date.now();
      const flaky = failing(db, ['fail']);
      const shaky = new SpendLedger(flaky.db, { retryDelayMs: 200 });
      const r = await ledger.reserve({ keyId: 'k-queued', projectId: 'p-queued', amount: 9_000, keyDailyCap: 10_000, keyLifetimeCap: null, projectDailyCap: null, now });
      if (!r.ok) throw new Error('reserve refused');
      const settling = shaky.settle(r.reservationId, 1_000);
      await new Promise((resolve) => setTimeout(resolve, 50)); // the first attempt has failed; the retry waits
      expect(shaky.pendingSettlements).toBe(1);
      await shaky.reclaimExpired(now + 16 * 60_000);
      const [row] = await db.query('SELECT reclaimed FROM reservations WHERE id = $1', [r.reservationId]);
      expect(Number(row!.reclaimed)).toBe(0);
      await settling;
      expect(await ledger.counter('key', 'k-queued', `d:${utcDay(now)}`)).toEqual({ spent: 1_000, reserved: 0, requests: 1 });
    });
  });
}

const uncapped = (keyId: string, projectId: string) => ({ keyId, projectId, keyDailyCap: null, keyLifetimeCap: null, projectDailyCap: null });

/**
 * `db` whose next transactions follow `plan`: 'fail' throws before anything is written (database
 * away), 'lose' commits and then throws (the answer was lost); then it behaves.
 */
function failing(db: SqlDb, plan: Array<'fail' | 'lose'>): { db: SqlDb; plan: Array<'fail' | 'lose'> } {
  const wrapped: SqlDb = {
    ...db,
    lane: () => wrapped,
    async transaction(fn) {
      const next = plan.shift();
      if (next === 'fail') throw new Error('Connection terminated unexpectedly');
      const result = await db.transaction(fn);
      if (next === 'lose') throw new Error('Connection terminated unexpectedly');
      return result;
    },
    async query(sql, params) {
      if (plan[0] === 'fail') {
        plan.shift();
        throw new Error('Connection terminated unexpectedly');
      }
      return db.query(sql, params);
    },
  };
  return { db: wrapped, plan };
}

describe.skipIf(skipPostgres)('spend ledger on PostgreSQL under concurrent load', () => {
  let database: Awaited<ReturnType<typeof isolatedDatabase>>;
  beforeAll(async () => {
    database = await isolatedDatabase('sg_spend_load');
    const setup = openPostgres({ connectionString: database.url });
    await new HostStore(setup).migrate();
    await setup.close();
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('two instances on separate pools, uncapped and capped keys, old and new call patterns: no deadlock, counters equal settled costs, nothing left reserved', async () => {
    const before = await deadlocks(database.name);
    const dbs = [openPostgres({ connectionString: database.url }), openPostgres({ connectionString: database.url })];
    const ledgers = dbs.map((d) => new SpendLedger(d));
    const day = utcDay(Date.now());
    const settled = { free: 0, capped: 0, freeRequests: 0, cappedRequests: 0 };
    const until = Date.now() + 2_000;
    // Per instance: the proxy's old pattern for uncapped keys (charge), the new one (reserve +
    // settle, every request) for the same key, and a capped key — all in one project.
    const loop = async (ledger: SpendLedger, i: number, kind: 'charge' | 'free' | 'capped') => {
      // For 2 s, and at least 5 rounds per loop whatever the machine's speed.
      for (let n = 0; n < 5 || Date.now() < until; n++) {
        const cost = 1_000 + ((i * 7 + n) % 13);
        if (kind === 'charge') {
          await ledger.charge('k-free', 'p-load', day, cost);
        } else {
          const caps = kind === 'capped' ? { keyDailyCap: 1e12, keyLifetimeCap: null, projectDailyCap: null } : { keyDailyCap: null, keyLifetimeCap: null, projectDailyCap: null };
          const r = await ledger.reserve({ keyId: kind === 'capped' ? 'k-capped' : 'k-free', projectId: 'p-load', amount: 5_000, ...caps, now: Date.now() });
          if (!r.ok) throw new Error('reserve refused');
          await ledger.settle(r.reservationId, cost);
        }
        if (kind === 'capped') {
          settled.capped += cost;
          settled.cappedRequests++;
        } else {
          settled.free += cost;
          settled.freeRequests++;
        }
      }
    };
    const kinds = ['charge', 'charge', 'free', 'free', 'capped', 'capped'] as const;
    await Promise.all(ledgers.flatMap((ledger, i) => kinds.map((kind, j) => loop(ledger, i * 10 + j, kind))));
    const [free, life, capped, project, requests, open] = await Promise.all([
      ledgers[0]!.counter('key', 'k-free', `d:${day}`),
      ledgers[0]!.counter('key', 'k-free', 'life'),
      ledgers[0]!.counter('key', 'k-capped', `d:${day}`),
      ledgers[0]!.counter('project', 'p-load', `d:${day}`),
      ledgers[0]!.counter('keyreq', 'k-free', `d:${day}`),
      dbs[0]!.query('SELECT COUNT(*)::int AS n FROM reservations'),
    ]);
    await Promise.all(dbs.map((d) => d.close()));
    expect(settled.freeRequests).toBeGreaterThanOrEqual(40);
    expect(settled.cappedRequests).toBeGreaterThanOrEqual(10);
    expect(free).toEqual({ spent: settled.free, reserved: 0, requests: settled.freeRequests });
    expect(life).toEqual({ spent: settled.free, reserved: 0, requests: settled.freeRequests });
    expect(capped).toEqual({ spent: settled.capped, reserved: 0, requests: settled.cappedRequests });
    expect(project).toEqual({ spent: settled.free + settled.capped, reserved: 0, requests: settled.freeRequests + settled.cappedRequests });
    expect(requests).toEqual({ spent: settled.freeRequests, reserved: 0, requests: settled.freeRequests });
    expect(open[0]!.n).toBe(0);
    // Backends report their statistics when they end: read after the pools are closed.
    expect(await deadlocks(database.name)).toBe(before);
  });

  it('settles a reservation once the database is back when it went away between reserve and settle', async () => {
    const relay = await cuttablePostgres();
    const relayed = new URL(relay.url);
    relayed.pathname = `/${database.name}`;
    const db = openPostgres({ connectionString: relayed.toString() });
    const direct = openPostgres({ connectionString: database.url });
    const errors: string[] = [];
    const ledger = new SpendLedger(db, { retryDelayMs: 100, maxRetryDelayMs: 200, onError: (e) => errors.push(e.message) });
    try {
      const now = Date.now();
      const day = `d:${utcDay(now)}`;
      const capped = await ledger.reserve({ keyId: 'k-away', projectId: 'p-away', amount: 8_000, keyDailyCap: 50_000, keyLifetimeCap: null, projectDailyCap: null, now });
      const free = await ledger.reserve({ ...uncapped('k-away-free', 'p-away'), amount: 0, now });
      if (!capped.ok || !free.ok) throw new Error('reserve refused');
      relay.cut();
      const settling = [ledger.settle(capped.reservationId, 3_000), ledger.settle(free.reservationId, 2_000), ledger.charge('k-away-free', 'p-away', utcDay(now), 500)];
      await new Promise((r) => setTimeout(r, 300));
      expect(ledger.pendingSettlements).toBe(3);
      expect(errors.length).toBeGreaterThan(0);
      expect(await new SpendLedger(direct).counter('key', 'k-away', day)).toEqual({ spent: 0, reserved: 8_000, requests: 0 });
      relay.restore();
      await Promise.all(settling);
      const reader = new SpendLedger(direct);
      expect(await reader.counter('key', 'k-away', day)).toEqual({ spent: 3_000, reserved: 0, requests: 1 });
      expect(await reader.counter('key', 'k-away-free', day)).toEqual({ spent: 2_500, reserved: 0, requests: 2 });
      expect(await reader.counter('project', 'p-away', day)).toEqual({ spent: 5_500, reserved: 0, requests: 3 });
      const [open] = await direct.query("SELECT COUNT(*)::int AS n FROM reservations WHERE project_id = 'p-away'");
      expect(open!.n).toBe(0);
    } finally {
      await ledger.close(0);
      await db.close();
      await direct.close();
      await relay.close();
    }
  });
});
