/**
 * The spend ledger on both engines: concurrent reservations never overshoot a cap, settlement
 * keeps counters exact, crashed reservations are reclaimed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../test/pg.ts';
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

    it('reclaims reservations of a crashed instance once expired, and a late settle still charges', async () => {
      const now = Date.now();
      const r = await ledger.reserve({ keyId: 'k-crash', projectId: 'p3', amount: 5_000, keyDailyCap: 5_000, keyLifetimeCap: null, projectDailyCap: null, now });
      expect(r.ok).toBe(true);
      expect((await ledger.reserve({ keyId: 'k-crash', projectId: 'p3', amount: 1, keyDailyCap: 5_000, keyLifetimeCap: null, projectDailyCap: null, now })).ok).toBe(false);
      expect(await ledger.reclaimExpired(now + 16 * 60_000)).toBe(1);
      const c = await ledger.counter('key', 'k-crash', `d:${utcDay(now)}`);
      expect(c.reserved).toBe(0);
      if (r.ok) await ledger.settle(r.reservationId, 1_234);
      expect(await ledger.counter('key', 'k-crash', `d:${utcDay(now)}`)).toEqual({ spent: 1_234, reserved: 0, requests: 1 });
      expect((await ledger.reserve({ keyId: 'k-crash', projectId: 'p3', amount: 3_000, keyDailyCap: 5_000, keyLifetimeCap: null, projectDailyCap: null, now })).ok).toBe(true);
    });
  });
}
