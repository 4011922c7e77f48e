/**
 * The audit writer against a database that commits a batch and then loses the answer (what a
 * PostgreSQL restart mid-commit looks like from the client), and against a PostgreSQL that goes
 * away: rows are kept, written once it is back, and never doubled.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgres, openSqlite, type SqlDb } from '../storage/db.ts';
import { cuttablePostgres, dropSchema, skipPostgres, uniqueSchema } from '../test/pg.ts';
import { AuditWriter, type AuditRow } from './audit.ts';
import { HostStore } from './store.ts';

const row = (i: number, keyId = 'key_1'): AuditRow => ({
  at: Date.now(), requestId: `req_${i}`, keyId, projectId: 'proj_default', connectionId: 'conn_1', provider: 'openai', modelRequested: 'gpt-4o-mini',
  modelResolved: 'gpt-4o-mini', tokensIn: 1, tokensOut: 1, tokensCached: 0, costMicros: 1, status: 200, code: null, clientIp: '127.0.0.1', city: null, deviceMatch: null, latencyMs: 1,
});

/** `db` whose audit INSERT commits and then reports a failure, once. */
function losingOneAnswer(db: SqlDb): SqlDb {
  let loseNextAnswer = true;
  const wrap = (inner: SqlDb): SqlDb => ({
    ...inner,
    lane: () => flaky,
    async query(sql, params) {
      const result = await inner.query(sql, params);
      if (sql.startsWith('INSERT INTO audit_log') && loseNextAnswer) {
        loseNextAnswer = false;
        throw new Error('Connection terminated unexpectedly');
      }
      return result as never;
    },
    transaction: (fn) => inner.transaction((tx) => fn(wrap(tx))),
  });
  const flaky = wrap(db);
  return flaky;
}

describe('audit writer', () => {
  let dir: string;
  let db: SqlDb;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sg-audit-'));
    db = openSqlite(join(dir, 'host.sqlite'));
    await new HostStore(db).migrate();
  });
  afterAll(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('retries a batch whose commit answer was lost without doubling a row', async () => {
    const errors: string[] = [];
    const writer = new AuditWriter(losingOneAnswer(db), (e) => errors.push(e.message));
    for (let i = 0; i < 25; i++) writer.write(row(i));
    await writer.flush();
    expect(errors).toEqual(['Connection terminated unexpectedly']);
    expect(writer.pending).toBe(25);
    await writer.flush();
    expect(writer.pending).toBe(0);
    const [count] = await db.query("SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS d FROM audit_log WHERE key_id = 'key_1'");
    expect({ n: Number(count!.n), d: Number(count!.d) }).toEqual({ n: 25, d: 25 });
  });

  it('writes a full batch of rows on SQLite with every column as given, each once', async () => {
    const writer = new AuditWriter(db, () => undefined);
    const rows = Array.from({ length: 450 }, (_, i) => ({
      ...row(i, 'key_batch'), at: 1_700_000_000_000 + i, tokensIn: i, tokensOut: 2 * i, tokensCached: i % 3, costMicros: 10 * i, status: i % 2 ? 200 : 429,
      code: i % 2 ? null : 'budget_busy', city: i % 5 ? null : 'Berlin', deviceMatch: i % 3 === 0 ? null : i % 3 === 1, latencyMs: i % 7, endpoint: `POST /v1/x/${i}`,
    }));
    for (const r of rows) writer.write(r);
    await writer.close();
    const stored = await db.query("SELECT * FROM audit_log WHERE key_id = 'key_batch' ORDER BY at");
    expect(stored).toHaveLength(rows.length);
    expect(new Set(stored.map((s) => s.id)).size).toBe(rows.length);
    stored.forEach((s, i) => {
      const r = rows[i]!;
      expect({
        at: Number(s.at), requestId: s.request_id, keyId: s.key_id, projectId: s.project_id, connectionId: s.connection_id, provider: s.provider, modelRequested: s.model_requested,
        modelResolved: s.model_resolved, tokensIn: Number(s.tokens_in), tokensOut: Number(s.tokens_out), tokensCached: Number(s.tokens_cached), costMicros: Number(s.cost_micros),
        status: Number(s.status), code: s.code, clientIp: s.client_ip, city: s.city, deviceMatch: s.device_match === null ? null : Number(s.device_match) === 1, latencyMs: Number(s.latency_ms),
        endpoint: s.endpoint,
      }).toEqual(r);
    });
  });

  it('keeps its rows when a SQLite transaction grouped with its write fails', async () => {
    const writer = new AuditWriter(db, () => undefined);
    writer.write(row(1, 'key_grouped'));
    // Another transaction in the same group commit fails alone; the audit write must not go with it.
    const failing = db.transaction(async (tx) => {
      await tx.query("UPDATE audit_log SET status = 0 WHERE key_id = 'nobody'");
      await new Promise((r) => setImmediate(r));
      throw new Error('refused');
    });
    await Promise.all([writer.flush(), failing.catch(() => undefined)]);
    const [count] = await db.query("SELECT COUNT(*) AS n FROM audit_log WHERE key_id = 'key_grouped'");
    expect(Number(count!.n)).toBe(1);
  });
});

describe.skipIf(skipPostgres)('audit writer on PostgreSQL that goes away', () => {
  const schema = uniqueSchema('sg_audit');
  let relay: Awaited<ReturnType<typeof cuttablePostgres>>;
  let db: SqlDb;
  beforeAll(async () => {
    relay = await cuttablePostgres();
    db = openPostgres({ connectionString: relay.url, schema });
    await new HostStore(db).migrate();
  });
  afterAll(async () => {
    await db?.close();
    await relay?.close();
    await dropSchema(schema);
  });

  it('writes the rows of an outage once when the database is back', async () => {
    const errors: string[] = [];
    const writer = new AuditWriter(db, (e) => errors.push(e.message));
    writer.write(row(0, 'key_outage'));
    await writer.flush(); // the audit lane now holds a live connection, which the cut breaks
    relay.cut();
    for (let i = 1; i <= 30; i++) writer.write(row(i, 'key_outage'));
    await writer.flush();
    expect(errors.length).toBeGreaterThan(0);
    expect(writer.pending).toBe(30);
    relay.restore();
    await writer.flush();
    expect(writer.pending).toBe(0);
    await writer.close();
    const [count] = await db.query("SELECT COUNT(*)::int AS n, COUNT(DISTINCT request_id)::int AS d FROM audit_log WHERE key_id = 'key_outage'");
    expect(count).toEqual({ n: 31, d: 31 });
  });
});
