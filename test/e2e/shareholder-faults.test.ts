/**
 * Threshold behaviour with real shareholder processes: up to n−t stopped still works, more gives
 * a clear 503; a shareholder serving a corrupted share is detected, named, and routed around.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enclaveMetrics, enrollConnection, eventually, startTestStack } from './helpers.ts';

/** /metrics is refused without a token or a separate listener (host/app.ts). */
const METRICS_TOKEN = 'sgmet_test_0123456789abcdef';
let stack: Awaited<ReturnType<typeof startTestStack>>;

beforeAll(async () => {
  stack = await startTestStack({ hostArgs: ['--metrics-token', METRICS_TOKEN] });
});
afterAll(async () => {
  await stack?.cleanup();
});

const chat = (key: string) =>
  new OpenAI({ apiKey: key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 }).chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi' }],
  });

describe('shareholder availability', () => {
  it('serves a cold key with 2 of 5 shareholders stopped', async () => {
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
    await Promise.all([stack.shareholders[0]!.stop(), stack.shareholders[3]!.stop()]);
    try {
      const completion = await chat(conn.key);
      expect(completion.choices[0]!.message.content).toContain('mock upstream');
    } finally {
      await Promise.all([stack.shareholders[0]!.start(), stack.shareholders[3]!.start()]);
    }
  });

  it('answers 503 shareholders_unavailable with 3 of 5 stopped', async () => {
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
    const before = stack.mock!.requests.length;
    await Promise.all([0, 2, 4].map((i) => stack.shareholders[i]!.stop()));
    try {
      const error = await chat(conn.key).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.APIError);
      expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
      expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('shareholders_unavailable');
      expect(stack.mock!.requests.length).toBe(before);
    } finally {
      await Promise.all([0, 2, 4].map((i) => stack.shareholders[i]!.start()));
    }
  });

  it('succeeds when one shareholder returns a corrupted share, and names it in logs and metrics', async () => {
    const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey, corrupt: 'sh-2' });
    const completion = await chat(conn.key);
    expect(completion.choices[0]!.message.content).toContain('mock upstream');
    const line = await eventually(async () =>
      (await enclaveMetrics(stack)).split('\n').find((l) => l.startsWith('securegate_enclave_bad_shares_total{shareholder="sh-2"}')),
    );
    expect(line).toMatch(/ 1$/);
    const metrics = await enclaveMetrics(stack);
    expect(metrics).not.toMatch(/bad_shares_total\{shareholder="sh-(1|3|4|5)"\}/);
    const log = readFileSync(join(stack.dataDir, 'logs', 'enclave.log'), 'utf8');
    expect(log).toMatch(/"shareholder":"sh-2".*bad share/);
    // The host exposes the enclave's metrics and turns the detection into an alert event.
    const hostMetrics = await (await fetch(`${stack.hostUrl}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
    expect(hostMetrics).toContain('securegate_enclave_bad_shares_total{shareholder="sh-2"} 1');
    expect(hostMetrics).toMatch(/securegate_enclave_share_fetch_seconds_count\{shareholder="sh-1"\} [1-9]/);
    expect(hostMetrics).toMatch(/securegate_enclave_upstream_response_seconds_count\{provider="openai"\} [1-9]/);
    const event = await eventually(async () => {
      const res = await fetch(`${stack.hostUrl}/admin/v1/events?type=shareholder_anomaly`, { headers: { authorization: `Bearer ${stack.adminToken}` } });
      const events = (await res.json()) as Array<{ detail: { shareholder: string; connectionId: string } }>;
      return events.find((e) => e.detail.connectionId === conn.connectionId);
    }, 15_000);
    expect(event.detail.shareholder).toBe('sh-2');
  });
});
