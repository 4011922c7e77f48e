/**
 * Weekly and monthly caps and per-minute rate limits in the spend ledger, on both engines: the
 * clock is the `now` each reservation carries, so week, month and minute boundaries are crossed
 * exactly. Bursts run reservations in parallel against one cap; none may overshoot.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../test/pg.ts';
import { openPostgres, openSqlite, type SqlDb } from '../storage/db.ts';
import { SpendLedger, type ReserveRequest } from './spend.ts';
import { HostStore } from './store.ts';

const at = (iso: string) => Date.parse(iso);
let n = 0;
const fresh = () => `key_p${process.pid}_${++n}`;
const base = (keyId: string, now: number, amount: number): ReserveRequest => ({
  keyId, projectId: `proj_${keyId}`, amount, keyDailyCap: null, keyLifetimeCap: null, projectDailyCap: null, now,
});

for (const engine of [{ name: 'sqlite', skip: false }, { name: 'postgres', skip: skipPostgres }]) {
  describe.skipIf(engine.skip)(`budget periods and rate limits on ${engine.name}`, () => {
    let db: SqlDb;
    let ledger: SpendLedger;
    let cleanup: () => Promise<void>;
    beforeAll(async () => {
      if (engine.name === 'sqlite') {
        const dir = await mkdtemp(join(tmpdir(), 'sg-periods-'));
        db = openSqlite(join(dir, 'h.sqlite'));
        cleanup = () => rm(dir, { recursive: true, force: true });
      } else {
        const schema = uniqueSchema('sg_periods');
        db = openPostgres({ connectionString: TEST_DATABASE_URL, schema, max: 20 });
        cleanup = () => dropSchema(schema);
      }
      await new HostStore(db).migrate();
      ledger = new SpendLedger(db);
    });
    afterAll(async () => {
      await ledger?.close();
      await db?.close();
      await cleanup?.();
    });

    const spend = async (r: ReserveRequest, actual: number) => {
      const res = await ledger.reserve(r);
      if (!res.ok) return res;
      await ledger.settle(res.reservationId, actual);
      return res;
    };

    it('counts a weekly cap across the days of one UTC week and starts again on Monday', async () => {
      const key = fresh();
      const week = (now: number, amount: number) => ({ ...base(key, now, amount), keyWeeklyCap: 10_000_000 });
      expect((await spend(week(at('2026-11-30T10:00:00Z'), 4_000_000), 4_000_000)).ok).toBe(true); // Monday
      expect((await spend(week(at('2026-12-03T10:00:00Z'), 4_000_000), 4_000_000)).ok).toBe(true); // Thursday
      const sunday = await ledger.reserve(week(at('2026-12-06T23:59:59Z'), 4_000_000));
      expect(sunday).toEqual({ ok: false, scope: 'key', period: 'w:2026-11-30' });
      expect((await spend(week(at('2026-12-07T00:00:00Z'), 4_000_000), 4_000_000)).ok).toBe(true); // next Monday
      expect((await ledger.counter('key', key, 'w:2026-11-30')).spent).toBe(8_000_000);
      expect((await ledger.counter('key', key, 'w:2026-12-07')).spent).toBe(4_000_000);
    });

    it('counts a monthly cap over the calendar month and starts again on the 1st', async () => {
      const key = fresh();
      const month = (now: number) => ({ ...base(key, now, 3_000_000), keyMonthlyCap: 5_000_000 });
      expect((await spend(month(at('2026-12-01T00:00:00Z')), 3_000_000)).ok).toBe(true);
      expect(await ledger.reserve(month(at('2026-12-31T23:59:59Z')))).toEqual({ ok: false, scope: 'key', period: 'm:2026-12' });
      expect((await spend(month(at('2027-01-01T00:00:00Z')), 3_000_000)).ok).toBe(true);
    });

    it('keeps no week or month counter for a key without such a cap, and starts one from the days so far when a cap is set', async () => {
      const key = fresh();
      await spend(base(key, at('2026-11-30T09:00:00Z'), 2_000_000), 1_000_000); // Monday
      await spend(base(key, at('2026-12-01T09:00:00Z'), 2_000_000), 500_000); // Tuesday
      expect(await ledger.counter('key', key, 'w:2026-11-30')).toMatchObject({ spent: 0, requests: 0 });
      await ledger.startPeriodCounters(key, ['week', 'month'], at('2026-12-02T09:00:00Z'));
      expect((await ledger.counter('key', key, 'w:2026-11-30')).spent).toBe(1_500_000);
      expect((await ledger.counter('key', key, 'm:2026-12')).spent).toBe(500_000); // Monday was in November
      const capped = await ledger.reserve({ ...base(key, at('2026-12-02T10:00:00Z'), 1_000_000), keyWeeklyCap: 2_000_000 });
      expect(capped).toEqual({ ok: false, scope: 'key', period: 'w:2026-11-30' });
      // Starting again never lowers what the counter kept since.
      expect((await spend({ ...base(key, at('2026-12-02T10:00:00Z'), 400_000), keyWeeklyCap: 2_000_000 }, 400_000)).ok).toBe(true);
      await ledger.startPeriodCounters(key, ['week'], at('2026-12-02T11:00:00Z'));
      expect((await ledger.counter('key', key, 'w:2026-11-30')).spent).toBe(1_900_000);
    });

    it('settles a reservation made before week and month counters existed without touching them', async () => {
      const key = fresh();
      const now = at('2026-12-02T12:00:00Z');
      // A row as the previous version wrote it: held = 1, no period bits.
      await db.transaction((tx) =>
        tx.query('INSERT INTO reservations (id, key_id, project_id, day, amount, created_at, expires_at, held) VALUES ($1, $2, $3, $4, $5, $6, $7, 1)', [`res_old_${key}`, key, `proj_${key}`, '2026-12-02', 900, now, now + 900_000]),
      );
      await db.transaction((tx) => tx.query("INSERT INTO spend_counters (scope, scope_id, period, spent, reserved, requests) VALUES ('key', $1, 'd:2026-12-02', 0, 900, 0)", [key]));
      await ledger.settle(`res_old_${key}`, 300);
      expect(await ledger.counter('key', key, 'd:2026-12-02')).toMatchObject({ spent: 300, reserved: 0 });
      expect(await ledger.counter('key', key, 'w:2026-11-30')).toMatchObject({ spent: 0, reserved: 0 });
    });

    it('lets a burst of 40 parallel requests through a 10 requests-per-minute limit exactly 10 times', async () => {
      const key = fresh();
      const now = at('2026-12-02T04:25:10Z');
      const results = await Promise.all(Array.from({ length: 40 }, () => ledger.reserve({ ...base(key, now, 0), keyRpm: 10 })));
      expect(results.filter((r) => r.ok)).toHaveLength(10);
      expect(results.find((r) => !r.ok)).toEqual({ ok: false, scope: 'keyreq', period: 'min:2026-12-02T04:25' });
      // Settling does not free a place in the minute: a settled request still counts.
      for (const r of results) if (r.ok) await ledger.settle(r.reservationId, 0);
      expect((await ledger.reserve({ ...base(key, now + 30_000, 0), keyRpm: 10 })).ok).toBe(false);
      expect((await ledger.reserve({ ...base(key, at('2026-12-02T04:26:00Z'), 0), keyRpm: 10 })).ok).toBe(true);
      expect(await ledger.counter('keyreq', key, 'min:2026-12-02T04:25')).toMatchObject({ spent: 10, reserved: 0 });
    });

    it('holds the token bound against tokens per minute and settles it down to the tokens used', async () => {
      const key = fresh();
      const now = at('2026-12-02T04:30:05Z');
      const tpm = (tokens: number) => ({ ...base(key, now, 100), keyTpm: 1000, tokens });
      const a = await ledger.reserve(tpm(600));
      expect(a.ok).toBe(true);
      expect(await ledger.reserve(tpm(600))).toEqual({ ok: false, scope: 'keytok', period: 'min:2026-12-02T04:30' });
      if (a.ok) await ledger.settle(a.reservationId, 50, 120);
      expect(await ledger.counter('keytok', key, 'min:2026-12-02T04:30')).toMatchObject({ spent: 120, reserved: 0 });
      const b = await ledger.reserve(tpm(600));
      expect(b.ok).toBe(true);
      // Without the tokens used, settlement charges the bound: it never undercounts.
      if (b.ok) await ledger.settle(b.reservationId, 50);
      expect(await ledger.counter('keytok', key, 'min:2026-12-02T04:30')).toMatchObject({ spent: 720, reserved: 0 });
    });

    it('settles the money of a request whose reported tokens are not a count, charging its token bound', async () => {
      const key = fresh();
      const now = at('2026-12-02T04:40:00Z');
      const r = await ledger.reserve({ ...base(key, now, 100), keyTpm: 1000, tokens: 300, keyDailyCap: 1000 });
      expect(r.ok).toBe(true);
      if (r.ok) await ledger.settle(r.reservationId, 80, -5);
      expect(await ledger.counter('keytok', key, 'min:2026-12-02T04:40')).toMatchObject({ spent: 300, reserved: 0 });
      expect(await ledger.counter('key', key, 'd:2026-12-02')).toMatchObject({ spent: 80, reserved: 0 });
    });

    it('refuses a request whose token bound alone exceeds the limit without holding anything', async () => {
      const key = fresh();
      const r = await ledger.reserve({ ...base(key, at('2026-12-02T04:31:00Z'), 1), keyTpm: 100, tokens: 101 });
      expect(r).toEqual({ ok: false, scope: 'keytok', period: 'min:2026-12-02T04:31' });
      expect(await ledger.counter('keytok', key, 'min:2026-12-02T04:31')).toMatchObject({ spent: 0, reserved: 0 });
    });

    it('releases every counter of a refused reservation: a weekly refusal leaves the minute and day untouched', async () => {
      const key = fresh();
      const now = at('2026-12-02T05:00:00Z');
      const r = { ...base(key, now, 5), keyWeeklyCap: 10, keyDailyCap: 100, keyRpm: 100, keyTpm: 1000, tokens: 10 };
      expect((await spend(r, 8)).ok).toBe(true);
      expect(await ledger.reserve(r)).toEqual({ ok: false, scope: 'key', period: 'w:2026-11-30' });
      expect(await ledger.counter('keyreq', key, 'min:2026-12-02T05:00')).toMatchObject({ spent: 1, reserved: 0 });
      expect(await ledger.counter('key', key, 'd:2026-12-02')).toMatchObject({ spent: 8, reserved: 0 });
    });

    it('reclaims an expired rate-limited reservation by charging its bounds, and sweeps old minute counters', async () => {
      const key = fresh();
      const now = at('2026-12-02T06:00:00Z');
      const r = await ledger.reserve({ ...base(key, now, 7), keyRpm: 5, keyTpm: 500, tokens: 300 });
      expect(r.ok).toBe(true);
      await ledger.reclaimExpired(now + 16 * 60_000);
      expect(await ledger.counter('keytok', key, 'min:2026-12-02T06:00')).toMatchObject({ spent: 300, reserved: 0 });
      expect(await ledger.counter('keyreq', key, 'min:2026-12-02T06:00')).toMatchObject({ spent: 1, reserved: 0 });
      // The late settlement corrects the charge to the tokens used.
      if (r.ok) await ledger.settle(r.reservationId, 7, 40);
      expect(await ledger.counter('keytok', key, 'min:2026-12-02T06:00')).toMatchObject({ spent: 40 });
      await ledger.reclaimExpired(now + 3 * 3_600_000);
      expect(await ledger.counter('keytok', key, 'min:2026-12-02T06:00')).toMatchObject({ spent: 0, reserved: 0, requests: 0 });
    });

    it('never overshoots a weekly cap under a burst of 30 parallel reservations', async () => {
      const key = fresh();
      const now = at('2026-12-04T12:00:00Z');
      const results = await Promise.all(Array.from({ length: 30 }, () => ledger.reserve({ ...base(key, now, 1_000), keyWeeklyCap: 7_500 })));
      expect(results.filter((r) => r.ok)).toHaveLength(7);
      const c = await ledger.counter('key', key, 'w:2026-11-30');
      expect(c.reserved).toBe(7_000);
    });
  });
}
