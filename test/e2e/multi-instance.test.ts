/**
 * Two host instances sharing one PostgreSQL (docs/architecture.md §8.5): a kill, revoke or lock change made
 * through one instance takes effect on the other within 1 second (LISTEN/NOTIFY), and first-use
 * IP binding stays atomic across instances.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostInstance, type ManagedProcess } from '../../scripts/stack.ts';
import { dropSchema, skipPostgres, TEST_DATABASE_URL, uniqueSchema } from '../pg.ts';
import { connectTestProvider, eventually, startTestStack } from './helpers.ts';

describe.skipIf(skipPostgres)('two host instances on one PostgreSQL', () => {
  const schema = uniqueSchema('sg_multi');
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  let second: ManagedProcess & { url: string };

  beforeAll(async () => {
    const db = ['--database', TEST_DATABASE_URL, '--db-schema', schema, '--trusted-proxy', 'loopback'];
    stack = await startTestStack({ hostArgs: db });
    second = await startHostInstance(stack, db);
  });
  afterAll(async () => {
    await second?.stop();
    await stack?.cleanup();
    await dropSchema(schema);
  });

  async function admin(base: string, method: string, path: string, body?: unknown) {
    const res = await fetch(`${base}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${stack.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return (await res.json()) as Record<string, unknown>;
  }

  const chat = (base: string, key: string, ip = '81.2.69.142') =>
    new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0, defaultHeaders: { 'x-forwarded-for': ip } }).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });

  /** Polls the second instance until the request is refused; returns how long that took. */
  async function msUntilRefused(key: string, since: number): Promise<{ ms: number; code: string }> {
    for (;;) {
      const outcome = await chat(second.url, key).then(
        () => undefined,
        (e: { code: string }) => e.code,
      );
      if (outcome) return { ms: Date.now() - since, code: outcome };
      if (Date.now() - since > 5_000) throw new Error('never refused');
    }
  }

  it('serves the same key from both instances', async () => {
    const created = await admin(stack.hostUrl, 'POST', '/keys', { connectionId: stack.demo!.connectionId });
    await chat(stack.hostUrl, created.key as string);
    await chat(second.url, created.key as string);
  });

  it('a kill on instance A stops the key on instance B within 1 s', async () => {
    const created = await admin(stack.hostUrl, 'POST', '/keys', { connectionId: stack.demo!.connectionId });
    const key = created.key as string;
    await chat(second.url, key); // B now has the key cached
    const t0 = Date.now();
    await admin(stack.hostUrl, 'POST', `/keys/${created.id as string}/kill`);
    const { ms, code } = await msUntilRefused(key, t0);
    expect(code).toBe('key_killed');
    expect(ms).toBeLessThan(1_000);
  });

  it('an IP lock set on instance B applies on instance A within 1 s', async () => {
    const created = await admin(second.url, 'POST', '/keys', { connectionId: stack.demo!.connectionId });
    const key = created.key as string;
    await chat(stack.hostUrl, key);
    const t0 = Date.now();
    await admin(second.url, 'POST', `/keys/${created.id as string}/lock`, { ip: '2.125.160.216' });
    // Now ask through A: swap roles by polling A.
    for (;;) {
      const outcome = await chat(stack.hostUrl, key).then(() => undefined, (e: { code: string }) => e.code);
      if (outcome) {
        expect(outcome).toBe('ip_mismatch');
        expect(Date.now() - t0).toBeLessThan(1_000);
        break;
      }
      if (Date.now() - t0 > 5_000) throw new Error('never refused');
    }
  });

  it('holds a $1.00 daily cap for 200 concurrent requests split across both instances', async () => {
    const created = await admin(stack.hostUrl, 'POST', '/keys', { connectionId: stack.demo!.connectionId, dailyLimit: 1 });
    const key = created.key as string;
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        new OpenAI({ apiKey: key, baseURL: `${i % 2 ? second.url : stack.hostUrl}/v1`, maxRetries: 0, defaultHeaders: { 'x-forwarded-for': '81.2.69.142' } })
          .chat.completions.create({ model: 'gpt-4o', max_tokens: 5000, messages: [{ role: 'user', content: 'hi' }] }),
      ),
    );
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    for (const r of results) if (r.status === 'rejected') expect(['budget_exceeded', 'budget_busy']).toContain((r.reason as { code: string }).code);
    const status = await eventually(async () => {
      const s = (await admin(second.url, 'GET', `/keys/${created.id as string}/status`)) as Record<string, number>;
      return s.reservedNow === 0 ? s : undefined;
    });
    // Each reservation is ~$0.05 (input bytes at the input price plus 5000 output tokens) and each
    // settled request a little less: about 19 fit, and the total never passes the cap.
    expect(ok).toBeGreaterThanOrEqual(18);
    expect(ok).toBeLessThanOrEqual(20);
    expect(status.spentToday).toBeLessThanOrEqual(1);
    expect(status.requestsToday).toBe(ok);
  });

  it('binds exactly one IP when both instances see concurrent first requests', async () => {
    const created = await admin(stack.hostUrl, 'POST', '/keys', { connectionId: stack.demo!.connectionId });
    const key = created.key as string;
    const ips = ['81.2.69.142', '2.125.160.216', '128.101.101.101', '200.160.2.3'];
    const results = await Promise.allSettled(ips.map((ip, i) => chat(i % 2 ? second.url : stack.hostUrl, key, ip)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  // Two hosts on one enclave (a rolling restart on one parent instance runs the old and the new
  // host side by side): both collect the same receipts, and a receipt stored twice is what
  // `usage --verify` names a replay — an honest host must never store one twice.
  it('stores each receipt of a shared enclave once when both instances collect it at the same moment', async () => {
    // A connection under an owner-signed policy: the enclave signs a receipt for its answers.
    const connectionId = await connectTestProvider(stack, 'openai', { connectionPolicy: { ceiling: { requests: 1000 } } });
    const created = await admin(stack.hostUrl, 'POST', '/keys', { connectionId });
    for (let i = 0; i < 6; i++) await chat(i % 2 ? second.url : stack.hostUrl, created.key as string);
    type Evidence = { receipts: Array<{ enclaveKey: string; receipt: { seq: number } }> };
    const path = `/receipts?connection=${connectionId}`;
    for (let round = 0; round < 3; round++) {
      const answers = (await Promise.all([admin(stack.hostUrl, 'GET', path), admin(second.url, 'GET', path)])) as unknown as Evidence[];
      for (const evidence of answers) {
        const seen = evidence.receipts.map((r) => `${r.enclaveKey}:${r.receipt.seq}`);
        expect(seen.length).toBeGreaterThan(0);
        expect(seen.length - new Set(seen).size).toBe(0);
      }
      await chat(stack.hostUrl, created.key as string);
    }
  });
});
