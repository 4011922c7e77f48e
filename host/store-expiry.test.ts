/**
 * The store's side of per-key limits (issue 20), on both engines: the new key columns round-trip
 * and clear one at a time, and the 60 s sweep marks keys past their expiry date as expired (the
 * request path refuses them on its own; the sweep makes the status and the lists say so).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../test/pg.ts';
import { openPostgres, openSqlite, type SqlDb } from '../storage/db.ts';
import { DEFAULT_PROJECT, HostStore, type KeyRecord } from './store.ts';

for (const engine of [{ name: 'sqlite', skip: false }, { name: 'postgres', skip: skipPostgres }]) {
  describe.skipIf(engine.skip)(`key limits in the store on ${engine.name}`, () => {
    let db: SqlDb;
    let store: HostStore;
    let cleanup: () => Promise<void>;
    const connectionId = `conn_${randomBytes(10).toString('hex')}`;
    const key = (overrides: Partial<KeyRecord>): KeyRecord => ({
      id: `key_${randomBytes(6).toString('hex')}`, hash: randomBytes(32).toString('hex'), hint: 'SG_abcd…wxyz', name: 'k', projectId: DEFAULT_PROJECT, connectionId, status: 'active',
      boundIp: null, boundAt: null, allowedCities: [], deviceHash: null, deviceSalt: null, allowedModels: [], requireSignature: false, signingSecret: null, inactiveExpiryMs: null,
      lastUsedAt: null, suspendedUntil: null, dailyLimitMicros: null, lifetimeLimitMicros: null, dailyRequestLimit: null, weeklyLimitMicros: null, monthlyLimitMicros: null,
      expiresAt: null, rpmLimit: null, tpmLimit: null, autoLock: ['ip'], scopes: ['inference'], boundCity: null, boundCityAt: null, deviceBoundAt: null, createdAt: Date.now(),
      updatedAt: Date.now(), ...overrides,
    });

    beforeAll(async () => {
      if (engine.name === 'sqlite') {
        const dir = await mkdtemp(join(tmpdir(), 'sg-store-expiry-'));
        db = openSqlite(join(dir, 'h.sqlite'));
        cleanup = () => rm(dir, { recursive: true, force: true });
      } else {
        const schema = uniqueSchema('sg_store_expiry');
        db = openPostgres({ connectionString: TEST_DATABASE_URL, schema });
        cleanup = () => dropSchema(schema);
      }
      store = new HostStore(db);
      await store.migrate();
      await store.insertConnection({
        id: connectionId, projectId: DEFAULT_PROJECT, name: 'c', provider: 'openai', origin: 'https://api.openai.com', authScheme: 'bearer',
        sealedRecord: 'AAAA', threshold: 3, shareholders: ['a', 'b', 'c'], allow: null, createdAt: Date.now(),
      });
    });
    afterAll(async () => {
      await store?.close();
      await cleanup?.();
    });

    it('stores weekly and monthly caps, the expiry date and rpm/tpm, and clears one without the others', async () => {
      const k = key({ weeklyLimitMicros: 20_000_000, monthlyLimitMicros: 50_000_000, expiresAt: Date.parse('2099-01-31T00:00:00Z'), rpmLimit: 60, tpmLimit: 100_000 });
      await store.insertKey(k);
      expect(await store.getKey(k.id)).toMatchObject({ weeklyLimitMicros: 20_000_000, monthlyLimitMicros: 50_000_000, expiresAt: Date.parse('2099-01-31T00:00:00Z'), rpmLimit: 60, tpmLimit: 100_000 });
      await store.updateKey(k.id, { rpmLimit: null });
      expect(await store.getKey(k.id)).toMatchObject({ rpmLimit: null, tpmLimit: 100_000, weeklyLimitMicros: 20_000_000, monthlyLimitMicros: 50_000_000 });
    });

    it('expires in the sweep exactly the active keys whose expiry date has come', async () => {
      const now = Date.now();
      const past = key({ expiresAt: now - 1 });
      const due = key({ expiresAt: now });
      const future = key({ expiresAt: now + 60_000 });
      const killed = key({ expiresAt: now - 1, status: 'killed' });
      for (const k of [past, due, future, killed]) await store.insertKey(k);
      const expired = await store.expireInactive(now);
      expect(expired.sort()).toEqual([past.id, due.id].sort());
      expect((await store.getKey(future.id))!.status).toBe('active');
      expect((await store.getKey(killed.id))!.status).toBe('killed');
    });
  });
}
