/**
 * Gateway benchmarks against the real dev stack (7 processes on loopback) and the mock upstream:
 * added latency of host + enclave versus calling the mock directly (same run), and cold key
 * reconstruction (first request on a fresh connection, 5 shareholders, 3-of-5).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { startStack } from '../scripts/stack.ts';
import { enrollConnection } from '../test/e2e/helpers.ts';
import type { BenchFigure } from './crypto.ts';

const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] });

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function timeRequests(pool: Pool, path: string, key: string, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    const res = await pool.request({ path, method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: BODY });
    await res.body.text();
    if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return times.sort((a, b) => a - b);
}

export async function gatewayBenchmarks(log: (m: string) => void): Promise<BenchFigure[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sg-bench-'));
  const stack = await startStack({ dataDir, hostPort: 0, mock: true });
  try {
    const direct = new Pool(stack.mock!.origin, { connections: 1 });
    const gateway = new Pool(stack.hostUrl, { connections: 1 });
    const n = 400;
    log(`bench: ${n} sequential requests direct and through the gateway (interleaved rounds)`);
    await timeRequests(direct, '/v1/chat/completions', stack.demo!.upstreamKey, 50);
    await timeRequests(gateway, '/v1/chat/completions', stack.demo!.key, 50);
    const d: number[] = [];
    const g: number[] = [];
    for (let round = 0; round < 4; round++) {
      d.push(...(await timeRequests(direct, '/v1/chat/completions', stack.demo!.upstreamKey, n / 4)));
      g.push(...(await timeRequests(gateway, '/v1/chat/completions', stack.demo!.key, n / 4)));
    }
    d.sort((a, b) => a - b);
    g.sort((a, b) => a - b);
    const coldCount = 12;
    log(`bench: cold key reconstruction on ${coldCount} fresh connections`);
    const cold: number[] = [];
    const warm: number[] = [];
    for (let i = 0; i < coldCount; i++) {
      const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
      cold.push(...(await timeRequests(gateway, '/v1/chat/completions', conn.key, 1)));
      warm.push(...(await timeRequests(gateway, '/v1/chat/completions', conn.key, 1)));
    }
    cold.sort((a, b) => a - b);
    warm.sort((a, b) => a - b);
    await direct.close();
    await gateway.close();
    const dp50 = percentile(d, 50);
    const dp99 = percentile(d, 99);
    const ms = (x: number) => x * 1000;
    return [
      { name: 'direct → mock, sequential p50', medianUs: ms(dp50), baseline: '-', ratio: 1 },
      { name: 'gateway (host+enclave) → mock, sequential p50', medianUs: ms(percentile(g, 50)), baseline: 'direct p50', ratio: percentile(g, 50) / dp50 },
      { name: 'added latency p50 (gateway − direct)', medianUs: ms(percentile(g, 50) - dp50), baseline: 'direct p50', ratio: (percentile(g, 50) - dp50) / dp50 },
      { name: 'gateway p99 (sequential)', medianUs: ms(percentile(g, 99)), baseline: 'direct p99', ratio: percentile(g, 99) / dp99 },
      { name: 'cold first request (key rebuilt from 5 shareholders)', medianUs: ms(percentile(cold, 50)), baseline: 'warm request same connection', ratio: percentile(cold, 50) / percentile(warm, 50) },
      { name: 'cold reconstruction (cold − warm, p50)', medianUs: ms(percentile(cold, 50) - percentile(warm, 50)), baseline: 'direct p50', ratio: (percentile(cold, 50) - percentile(warm, 50)) / dp50 },
    ];
  } finally {
    await stack.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
