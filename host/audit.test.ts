/**
 * The audit writer against a database that commits a batch and then loses the answer (what a
 * PostgreSQL restart mid-commit looks like from the client): the retry must not double rows.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite, type SqlDb } from '../storage/db.ts';
import { AuditWriter, type AuditRow } from './audit.ts';
import { HostStore } from './store.ts';

const row = (i: number): AuditRow => ({
  at: Date.now(), requestId: `req_${i}`, keyId: 'key_1', projectId: 'proj_default', connectionId: 'conn_1', provider: 'openai', modelRequested: 'gpt-4o-mini',
  modelResolved: 'gpt-4o-mini', tokensIn: 1, tokensOut: 1, tokensCached: 0, costMicros: 1, status: 200, code: null, clientIp: '127.0.0.1', city: null, deviceMatch: null, latencyMs: 1,
});

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
    let loseNextAnswer = true;
    const flaky: SqlDb = {
      ...db,
      async query(sql, params) {
        const result = await db.query(sql, params);
        if (sql.startsWith('INSERT INTO audit_log') && loseNextAnswer) {
          loseNextAnswer = false;
          throw new Error('Connection terminated unexpectedly');
        }
        return result as never;
      },
    };
    const errors: string[] = [];
    const writer = new AuditWriter(flaky, (e) => errors.push(e.message));
    for (let i = 0; i < 25; i++) writer.write(row(i));
    await writer.flush();
    expect(errors).toEqual(['Connection terminated unexpectedly']);
    expect(writer.pending).toBe(25);
    await writer.flush();
    expect(writer.pending).toBe(0);
    const [count] = await db.query("SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS d FROM audit_log WHERE key_id = 'key_1'");
    expect({ n: Number(count!.n), d: Number(count!.d) }).toEqual({ n: 25, d: 25 });
  });
});
