/**
 * Transactions on both engines: each is atomic, a failing one rolls back alone even when SQLite
 * groups concurrent transactions into one commit, and results arrive only once committed.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../test/pg.ts';
import { openPostgres, openSqlite, type SqlDb } from './db.ts';

const engines = [
  { name: 'sqlite', skip: false },
  { name: 'postgres', skip: skipPostgres },
];

for (const engine of engines) {
  describe.skipIf(engine.skip)(`transactions (${engine.name})`, () => {
    let db: SqlDb;
    let cleanup: () => Promise<void>;
    beforeAll(async () => {
      if (engine.name === 'sqlite') {
        const dir = await mkdtemp(join(tmpdir(), 'sg-db-'));
        db = openSqlite(join(dir, 'db.sqlite'));
        cleanup = () => rm(dir, { recursive: true, force: true });
      } else {
        const schema = uniqueSchema('sg_db');
        db = openPostgres({ connectionString: TEST_DATABASE_URL, schema });
        cleanup = () => dropSchema(schema);
      }
      await db.exec('CREATE TABLE counters (id TEXT PRIMARY KEY, n BIGINT NOT NULL)');
      await db.query("INSERT INTO counters (id, n) VALUES ('a', 0)");
    });
    afterAll(async () => {
      await db?.close();
      await cleanup?.();
    });

    it('keeps concurrent transactions atomic: the failing ones roll back alone', async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) =>
          db.transaction(async (tx) => {
            await tx.query("UPDATE counters SET n = n + 1 WHERE id = 'a'");
            await new Promise((r) => setImmediate(r));
            await tx.query("UPDATE counters SET n = n + 1 WHERE id = 'a'");
            if (i % 5 === 0) throw new Error(`refused ${i}`);
            return i;
          }),
        ),
      );
      expect(results.filter((r) => r.status === 'rejected')).toHaveLength(10);
      expect(results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<number>).value)).toHaveLength(40);
      const [row] = await db.query("SELECT n FROM counters WHERE id = 'a'");
      // 40 committed transactions × 2 increments; none of the 10 refused ones left a trace.
      expect(Number(row!.n)).toBe(80);
    });

    it('rolls back a transaction that fails in SQL', async () => {
      await expect(db.transaction(async (tx) => {
        await tx.query("UPDATE counters SET n = n + 1000 WHERE id = 'a'");
        await tx.query('INSERT INTO nowhere VALUES (1)');
      })).rejects.toThrow();
      const [row] = await db.query("SELECT n FROM counters WHERE id = 'a'");
      expect(Number(row!.n)).toBe(80);
    });
  });
}
