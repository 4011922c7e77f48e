/**
 * Spend caps, usage accounting and the audit trail through the real gateway (embedded engine,
 * one instance). The mock upstream "produces" exactly max_tokens completion tokens, so costs are
 * real genai-prices prices for gpt-4o.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, startTestStack } from './helpers.ts';

/** /metrics is refused without a token or a separate listener (host/app.ts). */
const METRICS_TOKEN = 'sgmet_test_0123456789abcdef';
let stack: Awaited<ReturnType<typeof startTestStack>>;

beforeAll(async () => {
  stack = await startTestStack({ hostArgs: ['--metrics-token', METRICS_TOKEN] });
});
afterAll(async () => {
  await stack?.cleanup();
});

async function admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${stack.hostUrl}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${stack.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return (await res.json()) as T;
}

const newKey = (options: Record<string, unknown>) => admin<{ id: string; key: string }>('POST', '/keys', { connectionId: stack.demo!.connectionId, ...options });
const sdk = (key: string) => new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
const ask = (key: string, maxTokens: number) => sdk(key).chat.completions.create({ model: 'gpt-4o', max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] });

interface Status {
  spentToday: number;
  reservedNow: number;
  requestsToday: number;
  dailyLimit: number | null;
  topModel: { model: string; share: number } | null;
  status: string;
}

/** Waits until every reservation of the key is settled. */
const settled = (id: string) => eventually(async () => {
  const s = await admin<Status>('GET', `/keys/${id}/status`);
  return s.reservedNow === 0 ? s : undefined;
});

describe('spend caps', () => {
  it('refuses with 429 budget_exceeded once the daily cap cannot fit a request, forwarding nothing', async () => {
    const k = await newKey({ dailyLimit: 0.25 });
    const served: number[] = [];
    for (let i = 0; i < 10; i++) {
      try {
        await ask(k.key, 5000);
        served.push(i);
      } catch (e) {
        const err = e as InstanceType<typeof OpenAI.APIError>;
        expect(err.status).toBe(429);
        expect(err.code).toBe('budget_exceeded');
        expect(err.headers?.get('x-should-retry')).toBe('false');
        break;
      }
    }
    // Each request costs 5000 × $10/M = $0.05 plus input: four fit under $0.25, the fifth cannot.
    expect(served).toHaveLength(4);
    const before = stack.mock!.requests.length;
    await expect(ask(k.key, 5000)).rejects.toMatchObject({ code: 'budget_exceeded' });
    expect(stack.mock!.requests.length).toBe(before);
    const status = await settled(k.id);
    expect(status.spentToday).toBeGreaterThan(0.2);
    expect(status.spentToday).toBeLessThanOrEqual(0.25);
    expect(status.requestsToday).toBe(4);
    expect(status.topModel).toEqual({ model: 'gpt-4o', share: 1 });
    const events = await admin<Array<{ type: string }>>('GET', `/events?keyId=${k.id}`);
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['budget_50', 'budget_80']));
  });

  it('holds a $1.00 cap under 200 concurrent requests and leaves counters exact', async () => {
    const k = await newKey({ dailyLimit: 1 });
    const results = await Promise.allSettled(Array.from({ length: 200 }, () => ask(k.key, 5000)));
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    // Refused while others' reservations were in flight (retryable) or once settled spend left no room.
    for (const r of results) if (r.status === 'rejected') expect(['budget_exceeded', 'budget_busy']).toContain((r.reason as { code: string }).code);
    const status = await settled(k.id);
    const audit = await admin<{ items: Array<{ cost: number; code: string | null }> }>('GET', `/audit?keyId=${k.id}&limit=1000`);
    const settledSum = audit.items.reduce((n, i) => n + Math.round(i.cost * 1e6), 0);
    // One request reserves ~$0.05 (its input bytes at the input price plus 5000 output tokens):
    // the cap admits about 19, and the total stays under the cap.
    expect(ok).toBeGreaterThanOrEqual(18);
    expect(ok).toBeLessThanOrEqual(20);
    expect(status.spentToday).toBeLessThanOrEqual(1);
    expect(Math.round(status.spentToday * 1e6)).toBe(settledSum);
    expect(audit.items.filter((i) => i.code === 'budget_exceeded' || i.code === 'budget_busy')).toHaveLength(200 - ok);
  });

  it('enforces a project daily cap across the project\'s keys', async () => {
    await admin('POST', '/projects', { id: 'proj_capped', name: 'Capped' });
    await admin('PATCH', '/projects/proj_capped', { dailyLimit: 0.12 });
    const { enrollConnection } = await import('./helpers.ts');
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey, projectId: 'proj_capped' });
    const keyA = (await admin<{ id: string; key: string }>('POST', '/keys', { connectionId: conn.connectionId })).key;
    const keyB = (await admin<{ id: string; key: string }>('POST', '/keys', { connectionId: conn.connectionId })).key;
    await ask(keyA, 5000);
    await ask(keyB, 5000);
    await expect(ask(keyA, 5000)).rejects.toMatchObject({ status: 429, code: 'budget_exceeded' });
    await expect(ask(keyB, 5000)).rejects.toMatchObject({ code: 'budget_exceeded' });
    // A key of another project is untouched by this cap.
    await ask(conn.key, 10).catch((e: { code: string }) => expect(e.code).toBe('budget_exceeded'));
    const other = (await newKey({})).key;
    await ask(other, 5000);
  });
});

describe('keys without caps', () => {
  it('hold no reservation but are charged exactly like capped keys, even concurrently on a fresh day\'s counters', async () => {
    const free = await newKey({});
    const capped = await newKey({ dailyLimit: 100 });
    await Promise.all(Array.from({ length: 20 }, () => ask(free.key, 50)));
    await Promise.all(Array.from({ length: 20 }, () => ask(capped.key, 50)));
    const a = await eventually(async () => {
      const s = await admin<Status>('GET', `/keys/${free.id}/status`);
      return s.requestsToday === 20 ? s : undefined;
    });
    const b = await settled(capped.id);
    expect(b.requestsToday).toBe(20);
    expect(a.reservedNow).toBe(0);
    expect(a.spentToday).toBeGreaterThan(0);
    // Same model, same answers: the same charge, reserved or not.
    expect(a.spentToday).toBeCloseTo(b.spentToday, 9);
  });
});

describe('usage accounting', () => {
  it('adds include_usage for a stream that did not ask, charges it, and strips the extra chunk', async () => {
    const k = await newKey({});
    const stream = await sdk(k.key).chat.completions.create({ model: 'gpt-4o', max_tokens: 1000, stream: true, messages: [{ role: 'user', content: 'hi' }] });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.some((c) => c.usage)).toBe(false);
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true);
    const status = await settled(k.id);
    expect(status.spentToday).toBeGreaterThanOrEqual(0.01); // 1000 output tokens at $10/M
  });

  it('passes the usage chunk through when the client asked for it', async () => {
    const k = await newKey({});
    const stream = await sdk(k.key).chat.completions.create({
      model: 'gpt-4o', max_tokens: 1000, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }],
    });
    let usage;
    for await (const c of stream) if (c.usage) usage = c.usage;
    expect(usage?.completion_tokens).toBe(1000);
  });

  it('writes one audit row per request with tokens, cost, IP and latency, and summarises usage', async () => {
    const k = await newKey({ models: ['gpt-4o'] });
    await ask(k.key, 200);
    await expect(sdk(k.key).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject({ code: 'model_not_allowed' });
    await settled(k.id);
    const audit = await admin<{ items: Array<Record<string, unknown>> }>('GET', `/audit?keyId=${k.id}`);
    expect(audit.items).toHaveLength(2);
    const [refused, served] = audit.items;
    expect(refused).toMatchObject({ code: 'model_not_allowed', status: 403, cost: 0 });
    expect(served).toMatchObject({ code: null, status: 200, modelRequested: 'gpt-4o', modelResolved: 'gpt-4o', tokensOut: 200, clientIp: '127.0.0.1' });
    expect(served!.cost as number).toBeGreaterThan(0.002);
    expect(JSON.stringify(audit)).not.toContain(k.key);
    const usage = await admin<Array<{ keyId: string; model: string; requests: number; cost: number }>>('GET', `/usage?keyId=${k.id}`);
    expect(usage).toEqual([expect.objectContaining({ keyId: k.id, model: 'gpt-4o', requests: 1 })]);
  });

  it('counts a streamed answer once in the request metrics, with its status, after it finished', async () => {
    // The host writes streamed answers itself (the Fastify reply is hijacked): its onResponse hook
    // must still count and time them.
    const served = async () => {
      const text = await (await fetch(`${stack.hostUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
      const count = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? 0);
      return {
        ok: count(/^securegate_requests_total\{route="\/v1\/\*",status="200",code=""\} (\d+)$/m),
        timed: count(/^securegate_request_duration_seconds_count\{route="\/v1\/\*"\} (\d+)$/m),
      };
    };
    const k = await newKey({});
    const before = await served();
    const stream = await sdk(k.key).chat.completions.create({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text.length).toBeGreaterThan(0);
    expect(await eventually(async () => {
      const after = await served();
      return after.ok === before.ok + 1 ? after : undefined;
    })).toEqual({ ok: before.ok + 1, timed: before.timed + 1 });
  });

  it('exposes Prometheus metrics and readiness', async () => {
    const metrics = await (await fetch(`${stack.hostUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
    expect(metrics).toContain('securegate_requests_total');
    expect(metrics).toMatch(/securegate_spend_dollars_total\{provider="openai"\} [0-9.]+/);
    expect(metrics).toContain('securegate_reservations_in_flight 0');
    const ready = await fetch(`${stack.hostUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, checks: { database: 'ok', enclave: 'ok' } });
  });
});
