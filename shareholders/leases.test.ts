/**
 * Lease counting in the shareholder's store (SPEC.md §9): at most the owner's k leases per
 * connection per UTC day, counted atomically and persisted, so restarting the shareholder (or
 * asking from many enclaves at once) grants no more. The refusal over the RPC is covered by
 * test/e2e/policy-enforcement.test.ts against the real release endpoint.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { maxLeasesPerDay, leaseLimitFor } from '../protocol/index.ts';
import { openShareStore } from './store.ts';

const share = (connectionId: string, maxLeasesPerDay?: number) => ({
  connectionId,
  ownerPublicKey: '00'.repeat(32),
  envelope: new Uint8Array(8),
  policy: '{"allow":[]}',
  maxReleasesPerMinute: 60,
  lastIssuedAt: 1,
  ...(maxLeasesPerDay !== undefined ? { maxLeasesPerDay } : {}),
});

describe('lease counting', () => {
  it('grants at most k leases a day, concurrently too, and keeps the count across a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sg-leases-'));
    try {
      let store = await openShareStore(dir);
      await store.insertShare(share('c1', 3));
      expect((await store.getShare('c1'))?.maxLeasesPerDay).toBe(3);
      const granted = await Promise.all(Array.from({ length: 10 }, () => store.takeLease('c1', 100, 3)));
      expect(granted.filter(Boolean)).toHaveLength(3);
      await store.close();
      store = await openShareStore(dir);
      expect(await store.takeLease('c1', 100, 3)).toBe(false);
      expect(await store.leasesOn('c1', 100)).toBe(3);
      // The next UTC day starts from zero.
      expect(await store.takeLease('c1', 101, 3)).toBe(true);
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an owner policy update sets, keeps or lifts the limit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sg-leases-'));
    try {
      const store = await openShareStore(dir);
      await store.insertShare(share('c2'));
      expect((await store.getShare('c2'))?.maxLeasesPerDay).toBeUndefined();
      expect(await store.updatePolicy('c2', '{"allow":[]}', 60, 2, 5)).toBe(true);
      expect((await store.getShare('c2'))?.maxLeasesPerDay).toBe(5);
      expect(await store.updatePolicy('c2', '{"allow":[]}', 60, 3, undefined)).toBe(true);
      expect((await store.getShare('c2'))?.maxLeasesPerDay).toBe(5);
      expect(await store.updatePolicy('c2', '{"allow":[]}', 60, 4, null)).toBe(true);
      expect((await store.getShare('c2'))?.maxLeasesPerDay).toBeUndefined();
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the lease bound', () => {
  it('⌊n·k/t⌋ leases with k chosen from the ceiling never serve more than the ceiling', () => {
    for (let n = 2; n <= 9; n++) {
      for (let t = 2; t <= n; t++) {
        for (const [ceiling, quota] of [[1000, 10], [1000, 7], [50, 50], [100_000, 333], [10, 3]] as const) {
          const k = leaseLimitFor({ ceiling: { requests: ceiling }, lease: { requests: quota } }, n, t)!;
          expect(maxLeasesPerDay(n, t, k) * quota, `n=${n} t=${t} C=${ceiling} q=${quota}`).toBeLessThanOrEqual(ceiling);
        }
      }
    }
  });

  it('takes the tighter of the request and token dimensions', () => {
    expect(leaseLimitFor({ ceiling: { requests: 1000, tokens: 1_000_000 }, lease: { requests: 10, tokens: 100_000 } }, 5, 3)).toBe(Math.floor((3 * 10) / 5));
    expect(leaseLimitFor({ ceiling: { requests: 1000 }, lease: { tokens: 10 } }, 5, 3)).toBeUndefined();
  });
});
