/**
 * Failures during traffic: shareholders dying (below threshold keeps serving, at threshold a clean
 * 503, recovery when they return), the enclave killed mid-stream (clean client error, spend
 * settled, restart and re-provisioning), and a host killed mid-stream (its reservation is
 * reclaimed, nothing is charged twice).
 */
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqlite } from '../../storage/db.ts';
import { SpendLedger, utcDay } from '../../host/spend.ts';
import { enrollConnection, eventually, startTestStack } from './helpers.ts';

let stack: Awaited<ReturnType<typeof startTestStack>>;

beforeAll(async () => {
  stack = await startTestStack({ hostArgs: ['--velocity-floor', '100000000'] });
});
afterAll(async () => {
  await stack?.cleanup();
});

const sdk = (key: string) => new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
const chat = (key: string) => sdk(key).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

async function admin(method: string, path: string, body?: unknown) {
  const res = await fetch(`${stack.hostUrl}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return (await res.json()) as Record<string, unknown>;
}

describe('shareholders dying during traffic', () => {
  it('keeps serving below threshold, answers 503 at threshold, recovers when they return', async () => {
    const conns = await Promise.all(Array.from({ length: 6 }, () => enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey })));
    // Traffic on the first two connections while two shareholders go down.
    const during = Promise.all([chat(conns[0]!.key), chat(conns[1]!.key)]);
    await Promise.all([stack.shareholders[1]!.stop(), stack.shareholders[4]!.stop()]);
    await during;
    await chat(conns[2]!.key);
    await stack.shareholders[2]!.stop();
    const refused = (await chat(conns[3]!.key).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(refused.status).toBe(503);
    expect(refused.code).toBe('shareholders_unavailable');
    // Keys already rebuilt keep working from the enclave's cache.
    await chat(conns[0]!.key);
    await Promise.all([1, 2, 4].map((i) => stack.shareholders[i]!.start()));
    await chat(conns[3]!.key);
    await chat(conns[4]!.key);
  });
});

describe('the enclave killed mid-stream', () => {
  it('gives the client a clean error, settles spend, and serves again after a restart', async () => {
    const created = await admin('POST', '/keys', { connectionId: stack.demo!.connectionId });
    const key = created.key as string;
    await chat(key);
    const stream = await sdk(key).chat.completions.create({ model: 'mock-slow', stream: true, messages: [{ role: 'user', content: 'x' }] });
    let chunks = 0;
    const consumed = (async () => {
      for await (const _ of stream) {
        chunks++;
        if (chunks === 3) stack.enclave.child.kill('SIGKILL');
      }
    })();
    await expect(consumed).rejects.toThrow();
    expect(chunks).toBeGreaterThanOrEqual(3);
    const status = await eventually(async () => {
      const s = await admin('GET', `/keys/${created.id as string}/status`);
      return s.reservedNow === 0 ? s : undefined;
    });
    expect(status.requestsToday).toBe(2);
    // While the enclave is down: a clean 503, in the provider's shape.
    const down = (await chat(key).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(down.status).toBe(503);
    expect(down.code).toBe('enclave_unavailable');
    await stack.restartEnclave();
    // Re-provisioned: a new ephemeral key, the data key rebuilt from the shareholders.
    const again = await chat(key);
    expect(again.choices[0]!.message.content).toContain('mock upstream');
  });
});

describe('a host killed mid-stream', () => {
  it('leaves a reservation that is reclaimed once, charged its bound, with no double charge', async () => {
    const created = await admin('POST', '/keys', { connectionId: stack.demo!.connectionId, dailyLimit: 10 });
    const key = created.key as string;
    const stream = await sdk(key).chat.completions.create({ model: 'gpt-4o-mini', user: 'mock-slow', stream: true, messages: [{ role: 'user', content: 'x' }] });
    const consumed = (async () => {
      let n = 0;
      for await (const _ of stream) if (++n === 2) stack.host.child.kill('SIGKILL');
    })();
    await expect(consumed).rejects.toThrow();
    await stack.restartHost();
    const db = openSqlite(join(stack.dataDir, 'host', 'host.sqlite'));
    try {
      const ledger = new SpendLedger(db);
      const day = `d:${utcDay(Date.now())}`;
      const before = await ledger.counter('key', created.id as string, day);
      expect(before.reserved).toBeGreaterThan(0);
      // Fifteen minutes later the sweep of any instance reclaims it — exactly once.
      expect(await ledger.reclaimExpired(Date.now() + 16 * 60_000)).toBe(1);
      expect(await ledger.reclaimExpired(Date.now() + 16 * 60_000)).toBe(0);
      // The stream was served in part and its usage never arrived: the crashed request is charged
      // the amount it held (an upper bound), once, and nothing stays reserved.
      const after = await ledger.counter('key', created.id as string, day);
      expect(after.reserved).toBe(0);
      expect(after.spent).toBe(before.reserved);
      expect(after.requests).toBe(1);
    } finally {
      await db.close();
    }
    await chat(key);
  });
});
