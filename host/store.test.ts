/**
 * One contract, two engines: the same suite runs against embedded SQLite and PostgreSQL.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../test/pg.ts';
import { openPostgres, openSqlite } from '../storage/db.ts';
import { DEFAULT_PROJECT, HostStore, type KeyRecord } from './store.ts';

interface Engine {
  name: string;
  skip: boolean;
  open(): Promise<{ store: HostStore; cleanup(): Promise<void>; reopen(): HostStore }>;
}

const engines: Engine[] = [
  {
    name: 'sqlite',
    skip: false,
    async open() {
      const dir = await mkdtemp(join(tmpdir(), 'sg-store-'));
      const path = join(dir, 'host.sqlite');
      return { store: new HostStore(openSqlite(path)), reopen: () => new HostStore(openSqlite(path)), cleanup: () => rm(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: 'postgres',
    skip: skipPostgres,
    async open() {
      const schema = uniqueSchema('sg_store');
      return {
        store: new HostStore(openPostgres({ connectionString: TEST_DATABASE_URL, schema })),
        reopen: () => new HostStore(openPostgres({ connectionString: TEST_DATABASE_URL, schema })),
        cleanup: () => dropSchema(schema),
      };
    },
  },
];

function keyRecord(connectionId: string, overrides: Partial<KeyRecord> = {}): KeyRecord {
  const now = Date.now();
  return {
    id: `key_${randomBytes(6).toString('hex')}`, hash: randomBytes(32).toString('hex'), hint: 'SG_abcd…wxyz', name: 'k', projectId: DEFAULT_PROJECT,
    connectionId, status: 'active', boundIp: null, boundAt: null, allowedCities: [], deviceHash: null, deviceSalt: null, allowedModels: [],
    requireSignature: false, signingSecret: null, inactiveExpiryMs: null, lastUsedAt: null, suspendedUntil: null, dailyLimitMicros: null, lifetimeLimitMicros: null, dailyRequestLimit: null, weeklyLimitMicros: null, monthlyLimitMicros: null, expiresAt: null, rpmLimit: null, tpmLimit: null, autoLock: ['ip'], scopes: ['inference'], boundCity: null, boundCityAt: null, deviceBoundAt: null, createdAt: now, updatedAt: now,
    ...overrides,
  };
}

for (const engine of engines) {
  describe.skipIf(engine.skip)(`host store on ${engine.name}`, () => {
    let store: HostStore;
    let cleanup: () => Promise<void>;
    let reopen: () => HostStore;
    const connectionId = `conn_${randomBytes(10).toString('hex')}`;

    beforeAll(async () => {
      ({ store, cleanup, reopen } = await engine.open());
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

    it('applies migrations once, also when run again by another instance', async () => {
      const second = reopen();
      expect(await second.migrate()).toEqual([]);
      await second.close();
      expect((await store.listProjects()).map((p) => p.id)).toContain(DEFAULT_PROJECT);
    });

    it('stores and finds keys by hash with every lock field round-tripping', async () => {
      const k = keyRecord(connectionId, { allowedCities: ['São Paulo, BR'], allowedModels: ['gpt-4o'], requireSignature: true, signingSecret: 'ab', inactiveExpiryMs: 7 * 86_400_000 });
      await store.insertKey(k);
      expect(await store.findKeyByHash(k.hash)).toEqual(k);
      expect(await store.getKey(k.id)).toEqual(k);
    });

    it('binds the IP for exactly one of many concurrent first uses', async () => {
      const k = keyRecord(connectionId);
      await store.insertKey(k);
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.bindIpIfUnbound(k.id, `10.0.0.${i + 1}`)));
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = `10.0.0.${results.indexOf(true) + 1}`;
      expect((await store.getKey(k.id))!.boundIp).toBe(winner);
    });

    it('never un-revokes a key', async () => {
      const k = keyRecord(connectionId);
      await store.insertKey(k);
      await store.updateKey(k.id, { status: 'revoked' });
      await store.updateKey(k.id, { status: 'active' });
      expect((await store.getKey(k.id))!.status).toBe('revoked');
    });

    it('accepts a request signature once', async () => {
      const sig = randomBytes(32).toString('hex');
      const results = await Promise.all([1, 2, 3].map(() => store.recordSignature(sig, Date.now() + 60_000)));
      expect(results.filter(Boolean)).toHaveLength(1);
    });

    it('expires keys unused beyond their inactivity limit', async () => {
      const old = keyRecord(connectionId, { inactiveExpiryMs: 1000, createdAt: Date.now() - 5000, updatedAt: Date.now() - 5000 });
      const fresh = keyRecord(connectionId, { inactiveExpiryMs: 60_000 });
      await store.insertKey(old);
      await store.insertKey(fresh);
      expect(await store.expireInactive()).toContain(old.id);
      expect((await store.getKey(old.id))!.status).toBe('expired');
      expect((await store.getKey(fresh.id))!.status).toBe('active');
    });

    it('keeps model aliases per project and events newest first', async () => {
      await store.setAlias(DEFAULT_PROJECT, 'gpt-4', 'gpt-4-0613');
      await store.setAlias(DEFAULT_PROJECT, 'gpt-4', 'gpt-4-turbo');
      expect(await store.listAliases(DEFAULT_PROJECT)).toEqual({ 'gpt-4': 'gpt-4-turbo' });
      await store.addEvent({ id: 'evt_1', at: 1, projectId: DEFAULT_PROJECT, keyId: null, type: 'ip_mismatch', detail: { clientIp: '1.2.3.4' } });
      await store.addEvent({ id: 'evt_2', at: 2, projectId: DEFAULT_PROJECT, keyId: null, type: 'ip_mismatch', detail: {} });
      expect((await store.listEvents({ type: 'ip_mismatch' })).map((e) => e.id)).toEqual(['evt_2', 'evt_1']);
    });

    it('announces key changes to listeners (cache invalidation channel)', async () => {
      const k = keyRecord(connectionId);
      await store.insertKey(k);
      const other = reopen();
      let resolveHeard!: (id: string) => void;
      const heard = new Promise<string>((resolve) => (resolveHeard = resolve));
      await other.onKeyChanged((id) => {
        if (id === k.id) resolveHeard(id);
      });
      // SQLite delivers in-process only; for it, listen on the same store.
      let resolveLocal!: (id: string) => void;
      const local = new Promise<string>((resolve) => (resolveLocal = resolve));
      await store.onKeyChanged((id) => {
        if (id === k.id) resolveLocal(id);
      });
      await store.updateKey(k.id, { status: 'killed' });
      expect(await local).toBe(k.id);
      if (engine.name === 'postgres') expect(await heard).toBe(k.id);
      await other.close();
    });
  });
}
