/**
 * The retention sweep on a real store (SQLite, and PostgreSQL when it answers): what is older than
 * the cutoff goes — audit rows, events and the enclave's usage receipts (one per metered request,
 * so without this the receipts table grows for ever) — and nothing newer.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgres, openSqlite } from '../../storage/db.ts';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../../test/pg.ts';
import { HostStore } from '../store.ts';
import { pruneRetained } from './retention.ts';

const engines = [
  {
    name: 'sqlite',
    skip: false,
    async open() {
      const dir = await mkdtemp(join(tmpdir(), 'sg-retention-'));
      return { store: new HostStore(openSqlite(join(dir, 'host.sqlite'))), cleanup: () => rm(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 'postgres',
    skip: skipPostgres,
    async open() {
      const schema = uniqueSchema('sg_retention');
      return { store: new HostStore(openPostgres({ connectionString: TEST_DATABASE_URL, schema })), cleanup: () => dropSchema(schema) };
    },
  },
];

for (const engine of engines) {
  describe.skipIf(engine.skip)(`retention on ${engine.name}`, () => {
    let store: HostStore;
    let cleanup: () => Promise<void>;
    beforeAll(async () => {
      ({ store, cleanup } = await engine.open());
      await store.migrate();
    });
    afterAll(async () => {
      await store?.db.close();
      await cleanup?.();
    });

    const id = (p: string) => `${p}_${randomBytes(8).toString('hex')}`;
    async function rowsAt(at: number): Promise<{ audit: string; event: string; receipt: string }> {
      const audit = id('aud');
      const event = id('evt');
      const receipt = id('rcp');
      await store.db.query(
        'INSERT INTO audit_log (id, at, request_id, key_id, project_id, connection_id, provider, model_requested, model_resolved, tokens_in, tokens_out, tokens_cached, cost_micros, status, code, client_ip, city, device_match, latency_ms, endpoint) VALUES ($1, $2, $3, NULL, $4, NULL, $5, NULL, NULL, 0, 0, 0, 0, 200, NULL, $6, NULL, NULL, 1, $7)',
        [audit, at, id('req'), 'default', 'openai', '127.0.0.1', 'POST /v1/chat/completions'],
      );
      await store.db.query('INSERT INTO events (id, at, project_id, key_id, type, detail) VALUES ($1, $2, $3, NULL, $4, $5)', [event, at, 'default', 'test', '{}']);
      await store.db.query('INSERT INTO usage_receipts (id, enclave_key, seq, connection_id, day, signed, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
        receipt, 'ab'.repeat(32), Math.floor(at / 1000), 'conn_x', Math.floor(at / 86_400_000), '{}', at,
      ]);
      return { audit, event, receipt };
    }
    const exists = async (table: string, rowId: string) => (await store.db.query(`SELECT id FROM ${table} WHERE id = $1`, [rowId])).length === 1;

    it('deletes audit rows, events and usage receipts older than the cutoff, and keeps newer ones', async () => {
      const now = Date.now();
      const old = await rowsAt(now - 91 * 86_400_000);
      const recent = await rowsAt(now - 89 * 86_400_000);
      await pruneRetained(store.db, now - 90 * 86_400_000);
      expect(await exists('audit_log', old.audit)).toBe(false);
      expect(await exists('events', old.event)).toBe(false);
      expect(await exists('usage_receipts', old.receipt)).toBe(false);
      expect(await exists('audit_log', recent.audit)).toBe(true);
      expect(await exists('events', recent.event)).toBe(true);
      expect(await exists('usage_receipts', recent.receipt)).toBe(true);
    });
  });
}
