/**
 * Spend caps that hold under concurrency, and spend that is counted exactly once.
 *
 * Every request is reserved before it is forwarded and settled exactly once afterwards. A capped
 * reservation adds an upper bound to every counter row of the request (key per UTC day, per UTC
 * week from Monday, per UTC calendar month and lifetime, project per UTC day, key requests per UTC
 * day; windows in host/spend-windows.ts) and fits only while spent + reserved + amount ≤ cap,
 * checked inside the statement that adds it, so instances sharing one database never overshoot by
 * more than one reservation. Week and month counters are kept only for a key with such a cap (they
 * would add two row writes to every settlement of every key); setting the cap starts the counter
 * from the key's day counters of the period so far (`startPeriodCounters`). A key with a requests-
 * or tokens-per-minute limit also reserves one request and the request's token bound in its
 * counters for the UTC minute the request began (`keyreq`/`keytok`, `min:…`); settlement turns the
 * token bound into the tokens actually used. The reservation row remembers which counters it moves:
 * `held` is a bit set (HELD_*), `minute` names the minute, `tokens` the token bound. An uncapped reservation only writes its reservation row:
 * no counter is locked before the cost is known. Settling deletes the reservation row (the guard
 * that makes settlement idempotent), releases what it held and charges the real cost.
 *
 * Why this cannot deadlock (PostgreSQL; SQLite has a single writer and takes it at BEGIN
 * IMMEDIATE, so it cannot deadlock at all). Rows are locked in one total order: reservation rows
 * by ascending id, then counter rows in COUNTER_ORDER.
 *   - Every transaction here locks its reservation rows first, in ascending id: a settlement
 *     batch by one DELETE whose subquery locks them `ORDER BY id FOR UPDATE` (PostgreSQL locks
 *     the rows as the sort emits them; the DELETE then waits on no row), the sweep (one reservation
 *     per transaction) by a single-row UPDATE; reserve inserts a fresh random id that no other
 *     transaction can see before it commits.
 *   - It then locks counter rows only with single-row statements (an upsert on the primary key),
 *     each row once, in COUNTER_ORDER — never a multi-row UPDATE, whose lock order follows the
 *     physical order of row versions and differs between transactions (the deadlock of issue 17).
 *   - Nothing else in the host locks these tables' rows (admin and key writes use other tables;
 *     the audit log only inserts fresh ids; cleanup deletes one row per statement; starting a
 *     period counter is one single-row statement outside any transaction).
 * A cycle of waits needs some transaction to wait for a row that comes before one it already
 * holds in that order. None ever does, so PostgreSQL never has a cycle to break.
 *
 * Settlement is durable: a settle (or charge) the database does not take (gone, failing over,
 * timing out) is kept in this process and retried with backoff until it is written. A retry that
 * finds the reservation row gone knows an earlier attempt committed (its answer was lost), so
 * nothing is counted twice. The sweep never reclaims a reservation whose settlement is queued here.
 *
 * Across a process crash (the settlement held in memory is lost): an expired reservation is
 * reclaimed by the sweep of any instance, which charges its reserved amount — the upper bound of
 * what the request could have cost — and counts the request. A crash can therefore overcharge a
 * counter by at most the unused part of a bound, never undercharge it, so a crash cannot be used
 * to spend past a cap. If the settlement arrives after all (a process that was cut off from the
 * database for longer than the TTL), it corrects the charge to the real cost.
 *
 * Integers only (micro-dollars): after any run without a crash, spent equals the sum of settled
 * costs exactly.
 */
import { newId } from './keys.ts';
import { valuesList, type Row, type SqlDb, type SqlValue } from '../storage/db.ts';
import { periodOf, utcDay, utcMinute } from './spend-windows.ts';

export { utcDay } from './spend-windows.ts';

export interface Counter {
  /** `key`/`project` count micro-dollars; `keyreq` counts requests (per day, per minute); `keytok` tokens per minute. */
  scope: 'key' | 'project' | 'keyreq' | 'keytok';
  scopeId: string;
  period: string;
  cap: number | null;
}

export interface ReserveRequest {
  keyId: string;
  projectId: string;
  /** Upper bound of the request's cost in micro-dollars (0 when none is known for an uncapped key). */
  amount: number;
  keyDailyCap: number | null;
  keyLifetimeCap: number | null;
  projectDailyCap: number | null;
  /** Requests per UTC day for this key, counted only when set. */
  keyDailyRequestCap?: number | null;
  /** Spend caps per UTC week (from Monday) and per UTC calendar month, in micro-dollars. */
  keyWeeklyCap?: number | null;
  keyMonthlyCap?: number | null;
  /** Requests and tokens per UTC minute; the minute counters are written only when one is set. */
  keyRpm?: number | null;
  keyTpm?: number | null;
  /** Upper bound of the request's tokens (input + output), reserved against keyTpm. */
  tokens?: number;
  now: number;
}

export type ReserveResult = { ok: true; reservationId: string; day: string } | { ok: false; scope: Counter['scope']; period: string };

export interface SettleResult {
  /** Key's spend today before and after, and its daily cap, for budget alerts. */
  keyDay: { before: number; after: number; cap: number | null };
}

export const RESERVATION_TTL_MS = 15 * 60_000;
/** Reclaimed reservation rows are kept this long, so a late settlement still finds its counters. */
const RECLAIMED_KEPT_MS = 86_400_000;

/** Errors of the ledger's own contract (a database failure is retried, never one of these). */
export class SpendError extends Error {
  readonly code: 'reservation_unknown' | 'invalid_amount' | 'ledger_closed';
  constructor(code: SpendError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

interface CounterOwner {
  keyId: string;
  projectId: string;
  keyDailyCap: number | null;
  keyLifetimeCap: number | null;
  projectDailyCap: number | null;
  keyDailyRequestCap?: number | null;
  keyWeeklyCap?: number | null;
  keyMonthlyCap?: number | null;
  keyRpm?: number | null;
  keyTpm?: number | null;
}

/** keytok sits between keyreq and key, so the relative order of the older scopes is unchanged. */
const SCOPE_RANK: Record<Counter['scope'], number> = { keyreq: 0, keytok: 1, key: 2, project: 3 };

/**
 * The one order in which counter rows are ever locked: a total order on the primary key. The
 * project row, shared by every key of the project, comes last so it is held for the shortest time.
 */
export function COUNTER_ORDER(a: Counter, b: Counter): number {
  return SCOPE_RANK[a.scope] - SCOPE_RANK[b.scope] || (a.scopeId < b.scopeId ? -1 : a.scopeId > b.scopeId ? 1 : 0) || (a.period < b.period ? -1 : a.period > b.period ? 1 : 0);
}

/**
 * Bits of a reservation row's `held`. Rows written before week and month counters existed hold 0
 * or 1, so a settlement after an upgrade never releases from a week or month row what it never added.
 */
export const HELD_AMOUNT = 1;
export const HELD_WEEK = 2;
export const HELD_MONTH = 4;

/** Which optional period counters a request moves: those its key has a cap for. */
function periodBits(r: CounterOwner): number {
  return ((r.keyWeeklyCap ?? null) !== null ? HELD_WEEK : 0) | ((r.keyMonthlyCap ?? null) !== null ? HELD_MONTH : 0);
}

/**
 * The counter rows of one request, in COUNTER_ORDER: the week and month rows only where `periods`
 * has their bit; the minute counters only for a request that reserved them (`minute`: its key had
 * a requests- or tokens-per-minute limit).
 */
export function countersOf(r: CounterOwner, day: string, minute: string | null = null, periods = periodBits(r)): Counter[] {
  const list: Counter[] = [
    { scope: 'key', scopeId: r.keyId, period: periodOf.day(day), cap: r.keyDailyCap },
    ...(periods & HELD_WEEK ? [{ scope: 'key' as const, scopeId: r.keyId, period: periodOf.week(day), cap: r.keyWeeklyCap ?? null }] : []),
    ...(periods & HELD_MONTH ? [{ scope: 'key' as const, scopeId: r.keyId, period: periodOf.month(day), cap: r.keyMonthlyCap ?? null }] : []),
    { scope: 'key', scopeId: r.keyId, period: 'life', cap: r.keyLifetimeCap },
    { scope: 'project', scopeId: r.projectId, period: periodOf.day(day), cap: r.projectDailyCap },
    { scope: 'keyreq', scopeId: r.keyId, period: periodOf.day(day), cap: r.keyDailyRequestCap ?? null },
  ];
  if (minute !== null) {
    list.push({ scope: 'keyreq', scopeId: r.keyId, period: periodOf.minute(minute), cap: r.keyRpm ?? null });
    list.push({ scope: 'keytok', scopeId: r.keyId, period: periodOf.minute(minute), cap: r.keyTpm ?? null });
  }
  return list.sort(COUNTER_ORDER);
}

/** Money counters move by the amount, token counters by the tokens; request counters always by one. */
const unitAmount = (c: Counter, amount: number, tokens = 0) => (c.scope === 'keyreq' ? 1 : c.scope === 'keytok' ? tokens : amount);
const noCaps = (keyId: string, projectId: string): CounterOwner => ({ keyId, projectId, keyDailyCap: null, keyLifetimeCap: null, projectDailyCap: null });
const isKeyDay = (c: Counter) => c.scope === 'key' && c.period.startsWith('d:');
/** Minute counters older than this are deleted by the sweep (they outlive any reservation's TTL). */
const MINUTE_COUNTERS_KEPT_MS = 2 * 60 * 60_000;

function assertMicros(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new SpendError('invalid_amount', `${name} must be a non-negative integer number of micro-dollars`);
}

class Refused extends Error {
  readonly counter: Counter;
  constructor(counter: Counter) {
    super('cap');
    this.counter = counter;
  }
}

/** One counter row moved by deltas; created when missing. One row, one statement, one lock. */
const MOVE = `INSERT INTO spend_counters (scope, scope_id, period, spent, reserved, requests) VALUES ($1, $2, $3, $4, $5, $6)
  ON CONFLICT (scope, scope_id, period) DO UPDATE SET spent = spend_counters.spent + $4, reserved = spend_counters.reserved + $5, requests = spend_counters.requests + $6
  RETURNING spent`;
/** Adds a reservation to one counter row only if it fits the cap (a fresh row fits: checked before). */
const RESERVE = `INSERT INTO spend_counters (scope, scope_id, period, spent, reserved, requests) VALUES ($1, $2, $3, 0, $4, 0)
  ON CONFLICT (scope, scope_id, period) DO UPDATE SET reserved = spend_counters.reserved + $4
  WHERE spend_counters.spent + spend_counters.reserved + $4 <= $5
  RETURNING reserved`;
const insertReservations = (tuples: string) => `INSERT INTO reservations (id, key_id, project_id, day, amount, created_at, expires_at, held, minute, tokens)
  VALUES ${tuples} ON CONFLICT (id) DO NOTHING`;
const INSERT_RESERVATION = insertReservations('($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)');

const RESERVATION_COLUMNS = 'id, key_id, project_id, day, amount, held, reclaimed, charged, minute, tokens';

/**
 * Deletes the reservation rows `ids` (ascending) and answers them by id; ids without a row are
 * absent. On PostgreSQL one statement takes them all: its subquery locks the rows as its sort
 * emits them, so in ascending id, as the lock order (header) requires — one round trip where a
 * DELETE per row was one each, in a transaction that holds its connection throughout. SQLite has
 * one writer and no round trips: a prepared DELETE per row.
 */
async function takeReservations(tx: SqlDb, ids: string[]): Promise<Map<string, Row>> {
  let rows: Row[];
  if (tx.engine === 'postgres') {
    // The ids as one tuple, `($1, …, $n)`.
    const { tuples, params } = valuesList([ids]);
    rows = await tx.query(`DELETE FROM reservations WHERE id IN (SELECT id FROM reservations WHERE id IN ${tuples} ORDER BY id FOR UPDATE) RETURNING ${RESERVATION_COLUMNS}`, params);
  } else {
    rows = (await Promise.all(ids.map((id) => tx.query(`DELETE FROM reservations WHERE id = $1 RETURNING ${RESERVATION_COLUMNS}`, [id])))).flat();
  }
  return new Map(rows.map((r) => [r.id as string, r]));
}

/** Transactions writing settlements at once per process, and settlements per transaction. */
const MAX_BATCHES = 4;
const MAX_BATCH = 200;

interface Settlement {
  id: string;
  actual: number;
  /** Tokens the request used, for a tokens-per-minute counter; undefined: charge the token bound. */
  actualTokens: number | undefined;
  /** A retry treats a missing reservation row as already settled (an earlier answer was lost). */
  isRetry: boolean;
  resolve: (r: SettleResult) => void;
  reject: (e: unknown) => void;
}

export interface SpendLedgerOptions {
  /** Told about every settlement attempt the database did not take (it is retried). */
  onError?: (e: Error) => void;
  /** First delay before retrying a settlement; it doubles up to maxRetryDelayMs. */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
}

export class SpendLedger {
  /** Writes: the spend lane (its own pool on PostgreSQL). */
  readonly #db: SqlDb;
  /** Reads for status and reports: never wait on the spend lane (MVCC reads take no row locks). */
  readonly #read: SqlDb;
  readonly #onError: (e: Error) => void;
  readonly #retryDelayMs: number;
  readonly #maxRetryDelayMs: number;
  /** Settlements (and charges) not yet written, by reservation id: the sweep leaves these alone. */
  readonly #pending = new Map<string, Promise<SettleResult>>();
  /** Settlement attempts waiting for a batch, and how many batches are being written. */
  #queue: Settlement[] = [];
  #batches = 0;
  /** A drain is due at the end of this turn of the event loop. */
  #drainScheduled = false;
  #closed = false;
  /** Unheld reservation rows waiting for this turn's INSERT (PostgreSQL). */
  #unheld: Array<{ params: SqlValue[]; resolve: () => void; reject: (e: unknown) => void }> = [];

  constructor(db: SqlDb, options: SpendLedgerOptions = {}) {
    this.#db = db.lane?.('spend') ?? db;
    this.#read = db;
    this.#onError = options.onError ?? (() => undefined);
    this.#retryDelayMs = options.retryDelayMs ?? 250;
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? 5_000;
  }

  /** Settlements held in this process until the database takes them. */
  get pendingSettlements(): number {
    return this.#pending.size;
  }

  async reserve(r: ReserveRequest): Promise<ReserveResult> {
    assertMicros(r.amount, 'amount');
    const tokens = r.tokens ?? 0;
    if (!Number.isSafeInteger(tokens) || tokens < 0) throw new SpendError('invalid_amount', 'tokens must be a non-negative integer');
    const day = utcDay(r.now);
    const id = newId('res');
    // The minute the request began names its rate counters; settlement reads it back from the row.
    const minute = (r.keyRpm ?? null) !== null || (r.keyTpm ?? null) !== null ? utcMinute(r.now) : null;
    const list = countersOf(r, day, minute);
    const reservation: SqlValue[] = [id, r.keyId, r.projectId, day, r.amount, r.now, r.now + RESERVATION_TTL_MS];
    if (list.every((c) => c.cap === null)) {
      // Nothing to check and nothing to hold: the counters move once, at settlement.
      await this.#insertUnheld([...reservation, 0, null, 0]);
      return { ok: true, reservationId: id, day };
    }
    // A bound larger than a cap cannot fit even an empty counter: refuse without locking anything.
    const tooBig = list.find((c) => c.cap !== null && unitAmount(c, r.amount, tokens) > c.cap);
    if (tooBig) return { ok: false, scope: tooBig.scope, period: tooBig.period };
    try {
      await this.#db.transaction(async (tx) => {
        await tx.query(INSERT_RESERVATION, [...reservation, HELD_AMOUNT | periodBits(r), minute, tokens]);
        for (const c of list) {
          const unit = unitAmount(c, r.amount, tokens);
          const fits = await tx.query(c.cap === null ? MOVE : RESERVE, c.cap === null ? [c.scope, c.scopeId, c.period, 0, unit, 0] : [c.scope, c.scopeId, c.period, unit, c.cap]);
          if (fits.length === 0) throw new Refused(c);
        }
      });
    } catch (e) {
      if (e instanceof Refused) return { ok: false, scope: e.counter.scope, period: e.counter.period };
      throw e;
    }
    return { ok: true, reservationId: id, day };
  }

  /**
   * Charges `actual` and releases what the reservation held; a reservation the sweep reclaimed is
   * corrected from the amount the sweep charged to the real cost. Resolves once written — retried
   * through database outages; a second call for the same id joins the first.
   */
  settle(reservationId: string, actual: number, actualTokens?: number): Promise<SettleResult> {
    try {
      assertMicros(actual, 'actual');
    } catch (e) {
      return Promise.reject(e);
    }
    // Tokens a response reported that are not a count (negative, fractional, absurd) settle as
    // unknown: the token bound stays charged, and the money settlement is never held up by them.
    const tokens = actualTokens !== undefined && Number.isSafeInteger(actualTokens) && actualTokens >= 0 ? actualTokens : undefined;
    const queued = this.#pending.get(reservationId);
    if (queued) return queued;
    return this.#durably(reservationId, (attempt) => this.#enqueue(reservationId, actual, attempt > 0, tokens));
  }

  /**
   * The call pattern from before every request was reserved: charges a request that holds no
   * reservation. It is written as one (an uncapped reservation row, then its settlement), so it is
   * as durable, idempotent and deadlock-free as reserve + settle.
   */
  charge(keyId: string, projectId: string, day: string, actual: number): Promise<SettleResult> {
    try {
      assertMicros(actual, 'actual');
    } catch (e) {
      return Promise.reject(e);
    }
    const id = newId('res');
    const now = Date.now();
    // The row is inserted with ON CONFLICT DO NOTHING: an insert retried after a lost answer is one row.
    let inserted = false;
    return this.#durably(id, async (attempt) => {
      if (!inserted) {
        await this.#insertUnheld([id, keyId, projectId, day, actual, now, now + RESERVATION_TTL_MS, 0, null, 0]);
        inserted = true;
        attempt = 0;
      }
      return this.#enqueue(id, actual, attempt > 0);
    });
  }

  /** Runs `write` until the database takes it; contract errors (SpendError) are not retried. */
  #durably(id: string, write: (attempt: number) => Promise<SettleResult>): Promise<SettleResult> {
    const run = async (): Promise<SettleResult> => {
      let delay = this.#retryDelayMs;
      for (let attempt = 0; ; attempt++) {
        try {
          return await write(attempt);
        } catch (e) {
          if (e instanceof SpendError || this.#closed) throw e;
          this.#onError(e as Error);
          await new Promise((r) => setTimeout(r, delay).unref());
          delay = Math.min(delay * 2, this.#maxRetryDelayMs);
          if (this.#closed) throw new SpendError('ledger_closed', `settlement of ${id} not written before the ledger closed; the sweep will reclaim it`);
        }
      }
    };
    const promise = run().finally(() => this.#pending.delete(id));
    this.#pending.set(id, promise);
    return promise;
  }

  /**
   * A reservation row that holds nothing (no cap to check), written before the request goes on.
   * On PostgreSQL the rows asked for in one turn of the event loop go in one multi-row INSERT, one
   * round trip and one spend-lane connection for all of them (SQLite's group commit already puts
   * a turn's transactions in one commit). The statement failing fails each of its requests, which
   * are then refused as when each wrote its own row: nothing is forwarded unreserved.
   */
  #insertUnheld(params: SqlValue[]): Promise<void> {
    if (this.#db.engine !== 'postgres') return this.#writeOne(INSERT_RESERVATION, params);
    return new Promise((resolve, reject) => {
      this.#unheld.push({ params, resolve, reject });
      if (this.#unheld.length === 1) setImmediate(() => this.#insertUnheldRows());
    });
  }

  #insertUnheldRows(): void {
    const waiting = this.#unheld;
    this.#unheld = [];
    for (let i = 0; i < waiting.length; i += MAX_BATCH) {
      const rows = waiting.slice(i, i + MAX_BATCH);
      const { tuples, params } = valuesList(rows.map((r) => r.params));
      this.#db.query(insertReservations(tuples), params).then(
        () => rows.forEach((r) => r.resolve()),
        (e: unknown) => rows.forEach((r) => r.reject(e)),
      );
    }
  }

  /** One statement outside a transaction; on SQLite through the group commit (see storage/db.ts). */
  async #writeOne(sql: string, params: SqlValue[]): Promise<void> {
    if (this.#db.engine === 'postgres') await this.#db.query(sql, params);
    else await this.#db.transaction((tx) => tx.query(sql, params));
  }

  /**
   * Settlements are written in batches: at most MAX_BATCHES transactions per process at a time,
   * and whatever arrives meanwhile joins the next one. Under load, one transaction then moves each
   * hot counter row (a busy key's, its project's) once for many requests instead of once per
   * request, so a row lock is taken once per batch rather than queued for per request. The first
   * batch waits for the end of the current turn of the event loop (setImmediate), so answers that
   * ended in the same turn settle together: on SQLite every transaction would otherwise hold one
   * settlement (it runs at once), paying the counter rows and a commit per request.
   */
  #enqueue(id: string, actual: number, isRetry: boolean, actualTokens?: number): Promise<SettleResult> {
    return new Promise<SettleResult>((resolve, reject) => {
      this.#queue.push({ id, actual, actualTokens, isRetry, resolve, reject });
      if (this.#drainScheduled) return;
      this.#drainScheduled = true;
      setImmediate(() => {
        this.#drainScheduled = false;
        this.#drain();
      });
    });
  }

  #drain(): void {
    while (this.#queue.length > 0 && this.#batches < MAX_BATCHES) {
      const batch = this.#queue.splice(0, MAX_BATCH);
      this.#batches++;
      this.#db
        .transaction((tx) => this.#settleBatch(tx, batch))
        .then(
          (outcomes) => outcomes.forEach((o, i) => (o.ok ? batch[i]!.resolve(o.value) : batch[i]!.reject(o.error))),
          (e: unknown) => batch.forEach((b) => b.reject(e)),
        )
        .finally(() => {
          this.#batches--;
          this.#drain();
        });
    }
  }

  /**
   * One transaction for a batch of settlements. Lock order (see the header): the reservation rows
   * one per statement in ascending id, then every counter row the batch moves, once each, in
   * COUNTER_ORDER. A settlement whose row is missing fails alone (or, on a retry, is done).
   */
  async #settleBatch(tx: SqlDb, batch: Settlement[]): Promise<Array<{ ok: true; value: SettleResult } | { ok: false; error: Error }>> {
    const outcomes: Array<{ ok: true; value: SettleResult } | { ok: false; error: Error }> = batch.map(() => ({ ok: true, value: { keyDay: { before: 0, after: 0, cap: null } } }));
    const moves = new Map<string, { counter: Counter; spent: number; reserved: number; requests: number }>();
    /** Per settlement: its key-day row and how much it moved it, for before/after. */
    const keyDays: Array<{ row: string; spent: number } | undefined> = [];
    const byId = batch.map((_, i) => i).sort((a, b) => (batch[a]!.id < batch[b]!.id ? -1 : 1));
    // Their deletion is the guard against settling twice.
    const taken = await takeReservations(tx, byId.map((i) => batch[i]!.id));
    for (const i of byId) {
      const { id, actual, actualTokens, isRetry } = batch[i]!;
      const res = taken.get(id);
      if (!res) {
        // On a retry, the row is gone because an earlier attempt committed and only its answer was lost.
        if (!isRetry) outcomes[i] = { ok: false, error: new SpendError('reservation_unknown', `reservation ${id} is unknown or already settled`) };
        continue;
      }
      const amount = Number(res.amount);
      const reclaimed = Number(res.reclaimed) === 1;
      const bits = Number(res.held);
      const held = (bits & HELD_AMOUNT) !== 0 && !reclaimed;
      // A reclaimed reservation was charged its amount and counted by the sweep (`charged`), or —
      // rows reclaimed before that rule — released without a charge (`charged` NULL).
      const charged = res.charged === null || res.charged === undefined ? null : Number(res.charged);
      // The token bound held (and, if reclaimed, charged); the tokens used when the caller knows them.
      const heldTokens = Number(res.tokens ?? 0);
      const usedTokens = actualTokens ?? heldTokens;
      for (const c of countersOf(noCaps(res.key_id as string, res.project_id as string), res.day as string, (res.minute as string | null) ?? null, bits)) {
        const corrected = reclaimed && charged !== null;
        const spent = corrected ? (c.scope === 'keyreq' ? 0 : c.scope === 'keytok' ? usedTokens - heldTokens : actual - charged) : unitAmount(c, actual, usedTokens);
        const row = `${c.scope}\0${c.scopeId}\0${c.period}`;
        const move = moves.get(row) ?? { counter: c, spent: 0, reserved: 0, requests: 0 };
        move.spent += spent;
        move.reserved -= held ? unitAmount(c, amount, heldTokens) : 0;
        move.requests += corrected ? 0 : 1;
        moves.set(row, move);
        if (isKeyDay(c)) keyDays[i] = { row, spent };
      }
    }
    const finalSpent = new Map<string, number>();
    for (const [row, m] of [...moves].sort((a, b) => COUNTER_ORDER(a[1].counter, b[1].counter))) {
      const [r] = await tx.query(MOVE, [m.counter.scope, m.counter.scopeId, m.counter.period, m.spent, m.reserved, m.requests]);
      finalSpent.set(row, Number(r?.spent ?? 0));
    }
    // Before/after per settlement, as if applied one by one in arrival order (one alert per line crossed).
    for (let i = batch.length - 1; i >= 0; i--) {
      const k = keyDays[i];
      if (!k) continue;
      const after = finalSpent.get(k.row)!;
      outcomes[i] = { ok: true, value: { keyDay: { before: after - k.spent, after, cap: null } } };
      finalSpent.set(k.row, after - k.spent);
    }
    return outcomes;
  }

  /**
   * Reclaims reservations that expired unsettled (their instance crashed, or was cut off from the
   * database for longer than the TTL): each is charged its reserved amount and counted, and its
   * row stays (marked) for a day so a late settlement corrects the charge. Returns how many.
   * Reservations whose settlement is queued in this process are left to it.
   */
  async reclaimExpired(now = Date.now()): Promise<number> {
    // Old reclaimed rows go one per statement: a multi-row DELETE would lock rows in scan order.
    const old = await this.#db.query('SELECT id FROM reservations WHERE reclaimed = 1 AND expires_at < $1 LIMIT 1000', [now - RECLAIMED_KEPT_MS]);
    for (const r of old) await this.#writeOne('DELETE FROM reservations WHERE id = $1 AND reclaimed = 1', [r.id as string]);
    // Minute counters of rate limits are only ever read in their minute: old ones go, one row per statement.
    const stale = await this.#db.query("SELECT scope, scope_id, period FROM spend_counters WHERE period LIKE 'min:%' AND period < $1 LIMIT 1000", [
      `min:${utcMinute(now - MINUTE_COUNTERS_KEPT_MS)}`,
    ]);
    for (const c of stale) {
      await this.#writeOne('DELETE FROM spend_counters WHERE scope = $1 AND scope_id = $2 AND period = $3', [c.scope as string, c.scope_id as string, c.period as string]);
    }
    const expired = await this.#db.query('SELECT id FROM reservations WHERE expires_at < $1 AND reclaimed = 0 ORDER BY expires_at LIMIT 1000', [now]);
    let reclaimed = 0;
    for (const { id } of expired) {
      if (this.#pending.has(id as string)) continue;
      // One transaction per reservation: its row, then its counters in order (see the header).
      const done = await this.#db.transaction(async (tx) => {
        // Guarded: a settlement that got there first wins and nothing is charged twice.
        const [r] = await tx.query('UPDATE reservations SET reclaimed = 1, charged = amount WHERE id = $1 AND reclaimed = 0 RETURNING key_id, project_id, day, amount, held, minute, tokens', [
          id as string,
        ]);
        if (!r) return false;
        const amount = Number(r.amount);
        const tokens = Number(r.tokens ?? 0);
        const bits = Number(r.held);
        const held = (bits & HELD_AMOUNT) !== 0;
        for (const c of countersOf(noCaps(r.key_id as string, r.project_id as string), r.day as string, (r.minute as string | null) ?? null, bits)) {
          await tx.query(MOVE, [c.scope, c.scopeId, c.period, unitAmount(c, amount, tokens), held ? -unitAmount(c, amount, tokens) : 0, 1]);
        }
        return true;
      });
      if (done) reclaimed++;
    }
    return reclaimed;
  }

  /**
   * Starts a key's week and/or month counter (when a cap is set on it) from its day counters of
   * the period so far, so a cap set mid-week counts the week's spend, not only what follows; never
   * lowers a counter already kept. One single-row statement (it waits on no other row while holding
   * one, so it cannot join a deadlock). What settles while the cap is being set, from requests
   * reserved before it, may be missed: at most the requests in flight at that moment.
   */
  async startPeriodCounters(keyId: string, periods: ReadonlyArray<'week' | 'month'>, now: number): Promise<void> {
    const day = utcDay(now);
    for (const kind of periods) {
      const period = kind === 'week' ? periodOf.week(day) : periodOf.month(day);
      const first = kind === 'week' ? period.slice(2) : `${period.slice(2)}-01`;
      const [row] = await this.#db.query("SELECT COALESCE(SUM(spent), 0) AS spent FROM spend_counters WHERE scope = 'key' AND scope_id = $1 AND period >= $2 AND period <= $3", [
        keyId,
        `d:${first}`,
        `d:${day}`,
      ]);
      await this.#writeOne(
        `INSERT INTO spend_counters (scope, scope_id, period, spent, reserved, requests) VALUES ('key', $1, $2, $3, 0, 0)
          ON CONFLICT (scope, scope_id, period) DO UPDATE SET spent = CASE WHEN spend_counters.spent < excluded.spent THEN excluded.spent ELSE spend_counters.spent END`,
        [keyId, period, Number(row?.spent ?? 0)],
      );
    }
  }

  async counter(scope: Counter['scope'], scopeId: string, period: string): Promise<{ spent: number; reserved: number; requests: number }> {
    const [r] = await this.#read.query('SELECT spent, reserved, requests FROM spend_counters WHERE scope = $1 AND scope_id = $2 AND period = $3', [scope, scopeId, period]);
    return { spent: Number(r?.spent ?? 0), reserved: Number(r?.reserved ?? 0), requests: Number(r?.requests ?? 0) };
  }

  /**
   * Waits (up to `timeoutMs`) for queued settlements to be written, then stops retrying: what is
   * still unwritten is left to the sweep (the crash rule in the header).
   */
  async close(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#pending.size > 0 && Date.now() < deadline) {
      await Promise.race([Promise.allSettled([...this.#pending.values()]), new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())).unref())]);
    }
    this.#closed = true;
  }
}
