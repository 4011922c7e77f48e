/**
 * Spend caps that hold under concurrency: reserve an upper bound atomically against every capped
 * counter (key per UTC day, key lifetime, project per UTC day) before forwarding, then settle
 * the real cost and release the rest. A reservation fits only while spent + reserved + amount ≤
 * cap, checked inside the same UPDATE that adds it (row locks in PostgreSQL, a write transaction
 * in SQLite), so instances sharing one database never overshoot by more than one reservation.
 * Reservations of a crashed instance expire and are reclaimed by a sweep (the row stays, marked,
 * for a day, so a late settle still charges the right counters). Integers only
 * (micro-dollars): after any run, spent equals the sum of settled costs exactly.
 */
import { randomBytes } from 'node:crypto';
import type { SqlDb, SqlValue } from '../storage/db.ts';

export interface Counter {
  /** `key`/`project` count micro-dollars; `keyreq` counts requests (any-API request caps). */
  scope: 'key' | 'project' | 'keyreq';
  scopeId: string;
  period: string;
  cap: number | null;
}

export interface ReserveRequest {
  keyId: string;
  projectId: string;
  amount: number;
  keyDailyCap: number | null;
  keyLifetimeCap: number | null;
  projectDailyCap: number | null;
  /** Requests per UTC day for this key, counted only when set. */
  keyDailyRequestCap?: number | null;
  now: number;
}

export type ReserveResult = { ok: true; reservationId: string; day: string } | { ok: false; scope: string; period: string };

export interface SettleResult {
  /** Key's spend today before and after, and its daily cap, for budget alerts. */
  keyDay: { before: number; after: number; cap: number | null };
}

export const RESERVATION_TTL_MS = 15 * 60_000;

export function utcDay(now: number): string {
  return new Date(now).toISOString().slice(0, 10);
}

interface CounterOwner {
  keyId: string;
  projectId: string;
  keyDailyCap: number | null;
  keyLifetimeCap: number | null;
  projectDailyCap: number | null;
  keyDailyRequestCap?: number | null;
}

function counters(r: CounterOwner, day: string): Counter[] {
  // Always in this order, so concurrent transactions take row locks in the same order.
  return [
    { scope: 'key', scopeId: r.keyId, period: `d:${day}`, cap: r.keyDailyCap },
    { scope: 'key', scopeId: r.keyId, period: 'life', cap: r.keyLifetimeCap },
    { scope: 'project', scopeId: r.projectId, period: `d:${day}`, cap: r.projectDailyCap },
    { scope: 'keyreq', scopeId: r.keyId, period: `d:${day}`, cap: r.keyDailyRequestCap ?? null },
  ];
}

/** Money counters move by the amount; the request counter always by one. */
const unitAmount = (c: Counter, amount: number) => (c.scope === 'keyreq' ? 1 : amount);
const noCaps = (keyId: string, projectId: string): CounterOwner => ({ keyId, projectId, keyDailyCap: null, keyLifetimeCap: null, projectDailyCap: null });

class Refused extends Error {
  readonly counter: Counter;
  constructor(counter: Counter) {
    super('cap');
    this.counter = counter;
  }
}

export class SpendLedger {
  readonly #db: SqlDb;
  /** Counter rows known to exist (they are never deleted): skips an INSERT per counter per request. */
  readonly #known = new Set<string>();
  constructor(db: SqlDb) {
    this.#db = db;
  }

  async reserve(r: ReserveRequest): Promise<ReserveResult> {
    const day = utcDay(r.now);
    const id = `res_${randomBytes(10).toString('hex')}`;
    const fresh: string[] = [];
    try {
      await this.#db.transaction(async (tx) => {
        await this.#ensure(tx, counters(r, day), fresh);
        for (const c of counters(r, day)) {
          const params: SqlValue[] = [unitAmount(c, r.amount), c.scope, c.scopeId, c.period];
          const fits =
            c.cap === null
              ? await tx.query('UPDATE spend_counters SET reserved = reserved + $1 WHERE scope = $2 AND scope_id = $3 AND period = $4 RETURNING reserved', params)
              : await tx.query(
                  'UPDATE spend_counters SET reserved = reserved + $1 WHERE scope = $2 AND scope_id = $3 AND period = $4 AND spent + reserved + $1 <= $5 RETURNING reserved',
                  [...params, c.cap],
                );
          if (fits.length === 0) throw new Refused(c);
        }
        await tx.query('INSERT INTO reservations (id, key_id, project_id, day, amount, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
          id, r.keyId, r.projectId, day, r.amount, r.now, r.now + RESERVATION_TTL_MS,
        ]);
      });
    } catch (e) {
      if (e instanceof Refused) return { ok: false, scope: e.counter.scope, period: e.counter.period };
      throw e;
    }
    this.#remember(fresh);
    return { ok: true, reservationId: id, day };
  }

  /**
   * Charges a request that needed no reservation (its key and project have no caps): the same
   * counters move, so status and reports are the same; nothing is held while it runs.
   */
  async charge(keyId: string, projectId: string, day: string, actual: number): Promise<SettleResult> {
    const attempt = async () => {
      const fresh: string[] = [];
      const result = await this.#db.transaction(async (tx) => {
        await this.#ensure(tx, counters(noCaps(keyId, projectId), day), fresh);
        // One statement for all four counters (nothing is released: there was no reservation).
        // It shares at most the project row with any other key's transaction, so it cannot
        // deadlock with their ordered updates.
        const rows = await tx.query(
          `UPDATE spend_counters SET spent = spent + CASE WHEN scope = 'keyreq' THEN 1 ELSE $1 END, requests = requests + 1
           WHERE (scope = 'key' AND scope_id = $2 AND (period = $3 OR period = 'life'))
              OR (scope = 'project' AND scope_id = $4 AND period = $3)
              OR (scope = 'keyreq' AND scope_id = $2 AND period = $3)
           RETURNING scope, period, spent`,
          [actual, keyId, `d:${day}`, projectId],
        );
        const keyDay = rows.find((r) => r.scope === 'key' && r.period === `d:${day}`);
        const after = Number(keyDay?.spent ?? actual);
        return { keyDay: { before: after - actual, after, cap: null } };
      });
      this.#remember(fresh);
      return result;
    };
    // A key given a cap while its requests run could meet its own ordered reservations once
    // (PostgreSQL then aborts one transaction): retry once rather than lose the charge.
    return attempt().catch(() => attempt());
  }

  /**
   * Creates missing counter rows. A row is remembered as existing only once the transaction that
   * made it has committed (#remember): until then another transaction must still try the INSERT,
   * which waits for the first to commit — or it would UPDATE a row it cannot see yet.
   */
  async #ensure(tx: SqlDb, list: Counter[], fresh: string[]): Promise<void> {
    for (const c of list) {
      const row = `${c.scope}\0${c.scopeId}\0${c.period}`;
      if (this.#known.has(row)) continue;
      await tx.query('INSERT INTO spend_counters (scope, scope_id, period, spent, reserved, requests) VALUES ($1, $2, $3, 0, 0, 0) ON CONFLICT DO NOTHING', [c.scope, c.scopeId, c.period]);
      fresh.push(row);
    }
  }

  #remember(rows: string[]): void {
    if (this.#known.size > 100_000) this.#known.clear();
    for (const row of rows) this.#known.add(row);
  }

  /** Charges `actual` and releases the reservation (unless a sweep already reclaimed it). */
  async settle(reservationId: string, actual: number): Promise<SettleResult> {
    return this.#db.transaction(async (tx) => {
      // A reclaimed reservation (amount 0) still knows its counters: the cost is charged, nothing released.
      const [res] = await tx.query('DELETE FROM reservations WHERE id = $1 RETURNING key_id, project_id, day, amount, reclaimed', [reservationId]);
      if (!res) throw new Error(`reservation ${reservationId} is unknown`);
      return this.#apply(tx, res.key_id as string, res.project_id as string, res.day as string, Number(res.amount), Number(res.reclaimed) === 1, actual);
    });
  }

  async #apply(tx: SqlDb, keyId: string, projectId: string, day: string, reserved: number, reclaimed: boolean, actual: number): Promise<SettleResult> {
    let keyDay = { before: 0, after: 0, cap: null as number | null };
    if (this.#db.engine === 'sqlite') {
      // SQLite has one writer at a time (no row locks, no deadlocks): one statement for all four.
      const rows = await tx.query(
        `UPDATE spend_counters SET reserved = reserved - CASE WHEN scope = 'keyreq' THEN $1 ELSE $2 END,
           spent = spent + CASE WHEN scope = 'keyreq' THEN 1 ELSE $3 END, requests = requests + 1
         WHERE (scope = 'key' AND scope_id = $4 AND (period = $5 OR period = 'life'))
            OR (scope = 'project' AND scope_id = $6 AND period = $5)
            OR (scope = 'keyreq' AND scope_id = $4 AND period = $5)
         RETURNING scope, period, spent`,
        [reclaimed ? 0 : 1, reclaimed ? 0 : reserved, actual, keyId, `d:${day}`, projectId],
      );
      const row = rows.find((r) => r.scope === 'key' && r.period === `d:${day}`);
      if (row) keyDay = { before: Number(row.spent) - actual, after: Number(row.spent), cap: null };
      return { keyDay };
    }
    // PostgreSQL: one row at a time, in the same order reservations lock them.
    for (const c of counters(noCaps(keyId, projectId), day)) {
      // A reclaimed reservation was already released by the sweep: only the charge remains.
      const release = reclaimed ? 0 : unitAmount(c, reserved);
      const [row] = await tx.query(
        'UPDATE spend_counters SET reserved = reserved - $1, spent = spent + $2, requests = requests + 1 WHERE scope = $3 AND scope_id = $4 AND period = $5 RETURNING spent',
        [release, unitAmount(c, actual), c.scope, c.scopeId, c.period],
      );
      if (c.scope === 'key' && c.period.startsWith('d:') && row) keyDay = { before: Number(row.spent) - actual, after: Number(row.spent), cap: null };
    }
    return { keyDay };
  }

  /**
   * Releases reservations whose instance never settled them (crash); returns how many. The row
   * stays (amount 0) for a day, so a late settle still charges the right counters.
   */
  async reclaimExpired(now = Date.now()): Promise<number> {
    return this.#db.transaction(async (tx) => {
      await tx.query('DELETE FROM reservations WHERE reclaimed = 1 AND expires_at < $1', [now - 86_400_000]);
      const expired = await tx.query('SELECT id, key_id, project_id, day, amount FROM reservations WHERE expires_at < $1 AND reclaimed = 0', [now]);
      let reclaimed = 0;
      for (const r of expired) {
        // Guarded: a settle that got there first wins and nothing is released twice.
        const claimed = await tx.query('UPDATE reservations SET reclaimed = 1 WHERE id = $1 AND reclaimed = 0 RETURNING id', [r.id as string]);
        if (claimed.length === 0) continue;
        reclaimed++;
        for (const c of counters(noCaps(r.key_id as string, r.project_id as string), r.day as string)) {
          await tx.query('UPDATE spend_counters SET reserved = reserved - $1 WHERE scope = $2 AND scope_id = $3 AND period = $4', [unitAmount(c, Number(r.amount)), c.scope, c.scopeId, c.period]);
        }
      }
      return reclaimed;
    });
  }

  async counter(scope: Counter['scope'], scopeId: string, period: string): Promise<{ spent: number; reserved: number; requests: number }> {
    const [r] = await this.#db.query('SELECT spent, reserved, requests FROM spend_counters WHERE scope = $1 AND scope_id = $2 AND period = $3', [scope, scopeId, period]);
    return { spent: Number(r?.spent ?? 0), reserved: Number(r?.reserved ?? 0), requests: Number(r?.requests ?? 0) };
  }
}
