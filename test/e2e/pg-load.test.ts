/**
 * Two host instances on one PostgreSQL under concurrent load on an uncapped and a capped key
 * (issue 17): a kill through one host is refused by the other within 1 s while the load runs —
 * also while every spend connection of both hosts waits on a lock — and afterwards PostgreSQL
 * counted no deadlock, no reservation is open, and the spend counters equal the audit trail.
 * The hosts use a database of their own, so pg_stat_database counts only their deadlocks.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareKill, reconcile, settled, startLoad, startTwoHosts, type TwoHosts } from '../../bench/soak.ts';
import { DEFAULT_LANES } from '../../storage/db.ts';
import { deadlocks, skipPostgres } from '../pg.ts';
import { eventually } from './helpers.ts';

describe.skipIf(skipPostgres)('two hosts on one PostgreSQL under load', () => {
  let hosts: TwoHosts;
  let deadlocksBefore: number;
  const keyIds: string[] = [];

  beforeAll(async () => {
    hosts = await startTwoHosts();
    deadlocksBefore = await deadlocks(hosts.databaseName);
  }, 120_000);
  afterAll(async () => {
    await hosts?.stop();
  });

  async function loadKeys() {
    const uncapped = await hosts.newKey();
    const capped = await hosts.newKey({ dailyLimit: 100_000 });
    keyIds.push(uncapped.id, capped.id);
    // Mostly uncapped traffic (the default, and what deadlocked), some capped.
    return [uncapped.key, uncapped.key, uncapped.key, capped.key];
  }

  it('refuses a key killed through one host on the other within 1 s while both serve concurrent traffic', async () => {
    const probe = await prepareKill(hosts);
    const load = startLoad(hosts.urls, await loadKeys(), { concurrency: 16 });
    try {
      await eventually(async () => (load.stats.served >= 60 ? true : undefined), 30_000);
      const kill = await probe.fire(0);
      expect(kill.code).toBe('key_killed');
      expect(kill.refusedAfterMs).toBeLessThan(1_000);
    } finally {
      await probe.close();
      const stats = await load.stop();
      expect(stats.failures).toEqual([]);
    }
  }, 60_000);

  it('answers admin requests and refuses a killed key within 1 s while every spend connection waits on a lock', async () => {
    const probe = await prepareKill(hosts);
    const load = startLoad(hosts.urls, await loadKeys(), { concurrency: 16 });
    const locker = new pg.Client({ connectionString: hosts.databaseUrl });
    await locker.connect();
    let lockedAt: number | undefined;
    let heldMs = 0;
    try {
      await eventually(async () => (load.stats.served >= 40 ? true : undefined), 30_000);
      // The project's counter rows, which every settlement and capped reservation must lock.
      await locker.query("BEGIN; SELECT * FROM spend_counters WHERE scope = 'project' FOR UPDATE");
      lockedAt = performance.now();
      // Both hosts' spend connections (8 each) end up waiting on that lock.
      await eventually(async () => {
        const { rows } = await locker.query("SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
        return (rows[0] as { n: number }).n >= 16 ? true : undefined;
      }, 5_000);
      const read = await hosts.admin(hosts.urls[1], 'GET', `/keys/${probe.keyId}`);
      expect(read.status).toBe(200);
      expect(read.ms).toBeLessThan(1_000);
      const kill = await probe.fire(1);
      expect(kill.adminMs).toBeLessThan(1_000);
      expect(kill.code).toBe('key_killed');
      expect(kill.refusedAfterMs).toBeLessThan(1_000);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      if (lockedAt !== undefined) heldMs = performance.now() - lockedAt;
      await locker.end();
      await probe.close();
      const stats = await load.stop();
      // A spend statement that waits on a lock longer than the spend lane's lock timeout fails
      // closed, 503 database_unavailable, as designed. Only a machine slow enough to keep the
      // lock held that long here allows those; nothing else may fail, ever.
      const designed = heldMs > DEFAULT_LANES.spend.lockTimeoutMs ? ['503 database_unavailable'] : [];
      expect(stats.failures.filter((f) => !designed.includes(f))).toEqual([]);
    }
  }, 60_000);

  it('writes settlements whose database sessions were terminated mid-flight once the database takes them again', async () => {
    const uncapped = await hosts.newKey();
    keyIds.push(uncapped.id);
    const load = startLoad(hosts.urls, [uncapped.key], { concurrency: 16 });
    const locker = new pg.Client({ connectionString: hosts.databaseUrl });
    await locker.connect();
    try {
      await eventually(async () => (load.stats.served >= 40 ? true : undefined), 30_000);
      await locker.query("BEGIN; SELECT * FROM spend_counters WHERE scope = 'project' FOR UPDATE");
      // Each host writes settlements in at most 4 transactions at once; wait until all 8 wait.
      await eventually(async () => {
        const { rows } = await locker.query("SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
        return (rows[0] as { n: number }).n >= 8 ? true : undefined;
      }, 5_000);
      // Every session waiting to write settlements is cut off, as a failover or restart would.
      const { rows } = await locker.query(
        "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
      );
      expect((rows[0] as { n: number }).n).toBeGreaterThanOrEqual(8);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
      const stats = await load.stop();
      expect(stats.failures).toEqual([]);
    }
    // The retried settlements land: counters match the audit trail (checked for all keys below).
    expect(await settled(hosts.sql)).toBe(true);
  }, 60_000);

  it('ends with no deadlock, no open reservation, and spend counters equal to the audit trail', async () => {
    expect(await settled(hosts.sql)).toBe(true);
    // Stopping the hosts flushes their audit rows and ends their sessions, which report statistics.
    await hosts.stopHosts();
    const all = await reconcile(hosts.sql);
    expect(all.openReservations).toBe(0);
    expect(all.counters.reserved).toBe(0);
    expect(all.audit.served).toBeGreaterThan(100);
    expect(all.counters).toMatchObject({ keyDay: all.audit.cost, keyLife: all.audit.cost, projectDay: all.audit.cost, requests: all.audit.served });
    // The load keys alone (capped and uncapped) reconcile too.
    const load = await reconcile(hosts.sql, keyIds);
    expect(load.counters).toMatchObject({ keyDay: load.audit.cost, keyLife: load.audit.cost, requests: load.audit.served });
    expect(await deadlocks(hosts.databaseName)).toBe(deadlocksBefore);
  }, 60_000);
});
