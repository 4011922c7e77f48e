/**
 * Gateway benchmarks against the real dev stack (7 processes on loopback), the mock upstream (in
 * a process of its own) and Portkey's gateway as the peer, all in one run: every figure is also
 * given as a ratio to the direct baseline measured in the same run (the machine is shared and
 * noisy). Bare relays (one and two hops of a do-nothing proxy) measure what the hops alone cost
 * here, so each gateway's own processing can be told apart from its process hops.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { generateOwnerKeyPair } from '../protocol/index.ts';
import { connectProvider, createKey } from '../cli/owner.ts';
import { startStack, type Stack } from '../scripts/stack.ts';
import { enrollConnection, freePort } from '../test/e2e/helpers.ts';
import type { BenchFigure } from './crypto.ts';

const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] });
const STREAM_BODY = JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'Say hello' }] });

export interface GatewayBenchOptions {
  /** Small counts and a 16 MB upload: proves the benchmark runs (CI), measures nothing. */
  smoke?: boolean;
  log: (m: string) => void;
}

interface Target {
  name: string;
  pool: Pool;
  path: string;
  headers: Record<string, string>;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function once(t: Target, body = BODY): Promise<number> {
  const t0 = performance.now();
  const res = await t.pool.request({ path: t.path, method: 'POST', headers: { ...t.headers, 'content-type': 'application/json' }, body });
  await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${t.name}: status ${res.statusCode}`);
  return performance.now() - t0;
}

async function sequential(t: Target, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await once(t));
  return out;
}

/** Open-loop load at `rps` for `ms`: latencies of every request, and the rate achieved. */
async function atRate(t: Target, rps: number, ms: number): Promise<{ latencies: number[]; achieved: number; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  const pending: Promise<void>[] = [];
  const start = performance.now();
  const total = Math.floor((rps * ms) / 1000);
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rps;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(once(t).then((l) => void latencies.push(l), () => void errors++));
  }
  await Promise.all(pending);
  return { latencies: latencies.sort((a, b) => a - b), achieved: (latencies.length * 1000) / (performance.now() - start), errors };
}

/**
 * Runs `measure` on every target in `rounds` interleaved rounds (target A, B, C, A, B, C, …), so a
 * burst of noise on this shared machine hits every target alike. Results per target, in order.
 */
async function interleaved<T>(targets: Target[], rounds: number, measure: (t: Target) => Promise<T>): Promise<Map<string, T[]>> {
  const out = new Map<string, T[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < rounds; round++) for (const t of targets) out.get(t.name)!.push(await measure(t));
  return out;
}

/** Per target: every latency of every round, sorted. */
function sortedLatencies(runs: Map<string, number[][]>): Map<string, number[]> {
  return new Map([...runs].map(([name, r]) => [name, r.flat().sort((a, b) => a - b)]));
}

async function maxThroughput(t: Target, concurrency: number, ms: number): Promise<number> {
  let done = 0;
  const until = performance.now() + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        await once(t);
        done++;
      }
    }),
  );
  return (done * 1000) / ms;
}

async function ttfb(t: Target, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await t.pool.request({ path: t.path, method: 'POST', headers: { ...t.headers, 'content-type': 'application/json' }, body: STREAM_BODY });
    for await (const _ of res.body) {
      out.push(performance.now() - t0);
      break;
    }
    await res.body.dump().catch(() => undefined);
  }
  return out.sort((a, b) => a - b);
}

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function startPortkey(): Promise<{ url: string; stop: () => void }> {
  const require = createRequire(import.meta.url);
  const script = require.resolve('@portkey-ai/gateway/build/start-server.js');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = spawn(process.execPath, [script, `--port=${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let exited = false;
    let stderr = '';
    child.once('exit', () => (exited = true));
    child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    const url = `http://127.0.0.1:${port}`;
    // Until it answers (and only while this child lives: another program could own the port).
    for (let i = 0; i < 100 && !exited; i++) {
      try {
        await fetch(`${url}/v1/models`);
        if (!exited) return { url, stop: () => child.kill('SIGTERM') };
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    child.kill('SIGKILL');
    if (attempt === 3) throw new Error(`Portkey gateway did not start: ${stderr.trim() || '(no output)'}`);
  }
}

/** Spawns a bench helper process and waits for its `{ "origin" }` line. */
async function spawnOrigin(script: string, env: Record<string, string>): Promise<{ origin: string; stop: () => void }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL(script, import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${script} exited (${code})`)));
  });
  return { origin: (JSON.parse(line) as { origin: string }).origin, stop: () => child.kill('SIGTERM') };
}

/** The mock upstream in its own process (see mock-process.ts), with a connection and key to it. */
async function startMockProcess(stack: Stack): Promise<{ origin: string; upstreamKey: string; key: string; stop: () => void }> {
  const upstreamKey = `sk-mock-${randomBytes(16).toString('hex')}`;
  const { origin, stop } = await spawnOrigin('./mock-process.ts', { MOCK_API_KEY: upstreamKey });
  const conn = await connectProvider({
    serverUrl: stack.hostUrl, adminToken: stack.adminToken, ownerSecretKey: generateOwnerKeyPair().secretKey,
    shareholders: stack.shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey })), threshold: stack.threshold, provider: 'openai',
    baseUrl: origin, name: 'bench (mock upstream process)', apiKey: new TextEncoder().encode(upstreamKey), pcrPolicy: { allow: [{ '0': stack.pcr0 }] }, dev: true,
  });
  const key = (await createKey(stack.hostUrl, stack.adminToken, conn.id)).key;
  return { origin, upstreamKey, key, stop };
}

/** Streams `bytes` through an any-API connection to a counting sink; samples host and enclave RSS. */
async function uploadThrough(stack: Stack, bytes: number, log: (m: string) => void): Promise<{ hostGrowthMb: number; enclaveGrowthMb: number; mbPerS: number }> {
  let received = 0;
  const sink = createServer((req, res) => {
    req.on('data', (c: Buffer) => (received += c.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ received })));
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
  const conn = await connectProvider({
    serverUrl: stack.hostUrl, adminToken: stack.adminToken, ownerSecretKey: generateOwnerKeyPair().secretKey,
    shareholders: stack.shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey })), threshold: stack.threshold, provider: 'any',
    baseUrl: origin, apiKey: new TextEncoder().encode('sk-sink'), pcrPolicy: { allow: [{ '0': stack.pcr0 }] }, dev: true, authScheme: 'bearer', allowRules: ['PUT /upload'],
  });
  const key = (await createKey(stack.hostUrl, stack.adminToken, conn.id)).key;
  const hostPid = stack.host.child.pid!;
  const enclavePid = stack.enclave.child.pid!;
  // Warm the key (cold reconstruction is measured elsewhere).
  await fetch(`${stack.hostUrl}/any/upload`, { method: 'PUT', headers: { authorization: `Bearer ${key}` }, body: 'x' });
  received = 0;
  const base = { host: await rssMb(hostPid), enclave: await rssMb(enclavePid) };
  const peak = { ...base };
  const sampler = setInterval(() => {
    void rssMb(hostPid).then((v) => (peak.host = Math.max(peak.host, v)));
    void rssMb(enclavePid).then((v) => (peak.enclave = Math.max(peak.enclave, v)));
  }, 50);
  const chunk = Buffer.alloc(256 * 1024, 7);
  let sent = 0;
  const body = new Readable({
    read() {
      if (sent >= bytes) return this.push(null);
      const n = Math.min(chunk.length, bytes - sent);
      sent += n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
  log(`bench: streaming ${(bytes / 1e6).toFixed(0)} MB through host and enclave`);
  const pool = new Pool(stack.hostUrl, { connections: 1 });
  const t0 = performance.now();
  const res = await pool.request({ path: '/any/upload', method: 'PUT', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/octet-stream' }, body, bodyTimeout: 0, headersTimeout: 0 });
  await res.body.text();
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  await pool.close();
  sink.close();
  if (received !== bytes) throw new Error(`sink received ${received} of ${bytes} bytes (status ${res.statusCode})`);
  return { hostGrowthMb: peak.host - base.host, enclaveGrowthMb: peak.enclave - base.enclave, mbPerS: bytes / 1e6 / seconds };
}

export async function gatewayBenchmarks(options: GatewayBenchOptions): Promise<BenchFigure[]> {
  const { log, smoke } = options;
  const dataDir = await mkdtemp(join(tmpdir(), 'sg-bench-'));
  // Abuse detection would (rightly) suspend a key doing thousands of requests a minute.
  const stack = await startStack({ dataDir, hostPort: 0, mock: true, hostArgs: ['--velocity-floor', '100000000'] });
  // Everything started is stopped, even when a later start fails.
  const started: Array<{ stop: () => void }> = [];
  const keep = <T extends { stop: () => void }>(p: T): T => (started.push(p), p);
  try {
    const portkey = keep(await startPortkey());
    const upstream = keep(await startMockProcess(stack));
    // Bare relays: one hop (Portkey's shape), and two chained hops (SecureGate's: host, enclave).
    const relay1 = keep(await spawnOrigin('./relay-process.ts', { RELAY_TARGET: upstream.origin }));
    const relay2b = keep(await spawnOrigin('./relay-process.ts', { RELAY_TARGET: upstream.origin }));
    const relay2 = keep(await spawnOrigin('./relay-process.ts', { RELAY_TARGET: relay2b.origin }));
    const mk = (name: string, base: string, path: string, headers: Record<string, string>): Target => ({ name, pool: new Pool(base, { connections: 256, pipelining: 1 }), path, headers });
    const direct = mk('direct', upstream.origin, '/v1/chat/completions', { authorization: `Bearer ${upstream.upstreamKey}` });
    const gateway = mk('securegate', stack.hostUrl, '/v1/chat/completions', { authorization: `Bearer ${upstream.key}` });
    const peer = mk('portkey', portkey.url, '/v1/chat/completions', {
      authorization: `Bearer ${upstream.upstreamKey}`,
      'x-portkey-provider': 'openai',
      'x-portkey-custom-host': `${upstream.origin}/v1`,
    });
    const bare1 = mk('relay1', relay1.origin, '/v1/chat/completions', { authorization: `Bearer ${upstream.upstreamKey}` });
    const bare2 = mk('relay2', relay2.origin, '/v1/chat/completions', { authorization: `Bearer ${upstream.upstreamKey}` });
    const targets = [direct, gateway, peer, bare1, bare2];
    const n = smoke ? 20 : 400;
    log(`bench: warm-up, then ${n} sequential requests per target in interleaved rounds`);
    for (const t of targets) await sequential(t, smoke ? 5 : 100);
    const seq = sortedLatencies(await interleaved(targets, 4, (t) => sequential(t, n / 4)));

    const rps = smoke ? 50 : 500;
    const duration = smoke ? 500 : 4000;
    const rounds = smoke ? 1 : 4;
    log(`bench: open-loop ${rps} requests/s, ${rounds} interleaved rounds of ${duration / rounds} ms per target`);
    const load = new Map(
      [...(await interleaved(targets, rounds, (t) => atRate(t, rps, duration / rounds)))].map(([name, runs]) => [
        name,
        {
          latencies: runs.flatMap((r) => r.latencies).sort((a, b) => a - b),
          achieved: runs.reduce((sum, r) => sum + r.achieved, 0) / runs.length,
          errors: runs.reduce((sum, r) => sum + r.errors, 0),
        },
      ]),
    );
    log('bench: maximum throughput (32 concurrent clients), interleaved rounds');
    const tput = new Map(
      [...(await interleaved([direct, gateway, peer], 3, (t) => maxThroughput(t, 32, smoke ? 100 : 1000)))].map(([name, runs]) => [name, runs.reduce((a, b) => a + b, 0) / runs.length]),
    );
    log('bench: streaming time to first byte');
    const first = sortedLatencies(await interleaved(targets, 4, (t) => ttfb(t, smoke ? 2 : 50)));

    const coldCount = smoke ? 2 : 20;
    log(`bench: cold key reconstruction on ${coldCount} fresh connections (5 shareholders, 3-of-5)`);
    // Warm-up (as every other figure has): a long-running shareholder's release path is compiled
    // by the JIT; this measures a cold *key*, not freshly started processes.
    for (let i = 0; i < (smoke ? 0 : 3); i++) {
      const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
      await once({ ...gateway, headers: { authorization: `Bearer ${conn.key}` } });
    }
    const cold: number[] = [];
    const warm: number[] = [];
    for (let i = 0; i < coldCount; i++) {
      const conn = await enrollConnection(stack, { upstreamKey: stack.demo!.upstreamKey });
      const t = { ...gateway, headers: { authorization: `Bearer ${conn.key}` } };
      cold.push(await once(t));
      warm.push(await once(t));
    }
    cold.sort((a, b) => a - b);
    warm.sort((a, b) => a - b);

    const upload = await uploadThrough(stack, smoke ? 16 * 1024 * 1024 : 1_000_000_000, log);
    const pids = [stack.host, stack.enclave, stack.shareholderProcess()!].map((p) => p.child.pid!);
    const stackMb = (await Promise.all(pids.map(rssMb))).reduce((a, b) => a + b, 0);
    for (const t of targets) await t.pool.close();

    const us = (ms: number) => ms * 1000;
    const d = seq.get('direct')!;
    const added = (name: string, p: number) => percentile(seq.get(name)!, p) - percentile(d, p);
    const loadAdded = (name: string, p: number) => percentile(load.get(name)!.latencies, p) - percentile(load.get('direct')!.latencies, p);
    const dp50 = percentile(d, 50);
    const firstAdded = (name: string) => percentile(first.get(name)!, 50) - percentile(first.get('direct')!, 50);
    /** A gateway's own processing: its added latency beyond bare relays with as many hops. */
    const own = (what: string, sg: number, pk: number): BenchFigure[] => [
      { name: `SecureGate own processing, ${what} (added − 2 bare hops)`, medianUs: us(sg), baseline: 'Portkey − 1 bare hop', ratio: sg / pk },
      { name: `Portkey own processing, ${what} (added − 1 bare hop)`, medianUs: us(pk), baseline: '-', ratio: 1 },
    ];
    return [
      { name: 'direct → mock, sequential p50 (baseline)', medianUs: us(dp50), baseline: '-', ratio: 1 },
      { name: 'SecureGate added latency, sequential p50', medianUs: us(added('securegate', 50)), baseline: 'direct p50', ratio: added('securegate', 50) / dp50 },
      { name: 'Portkey added latency, sequential p50', medianUs: us(added('portkey', 50)), baseline: 'direct p50', ratio: added('portkey', 50) / dp50 },
      { name: 'SecureGate added latency, sequential p99', medianUs: us(added('securegate', 99)), baseline: 'direct p99', ratio: added('securegate', 99) / percentile(d, 99) },
      { name: 'Portkey added latency, sequential p99', medianUs: us(added('portkey', 99)), baseline: 'direct p99', ratio: added('portkey', 99) / percentile(d, 99) },
      { name: `SecureGate added p50 at ${rps} req/s`, medianUs: us(loadAdded('securegate', 50)), baseline: `direct p50 at ${rps}/s`, ratio: loadAdded('securegate', 50) / percentile(load.get('direct')!.latencies, 50) },
      { name: `SecureGate added p99 at ${rps} req/s`, medianUs: us(loadAdded('securegate', 99)), baseline: `direct p99 at ${rps}/s`, ratio: loadAdded('securegate', 99) / percentile(load.get('direct')!.latencies, 99) },
      { name: `Portkey added p50 at ${rps} req/s`, medianUs: us(loadAdded('portkey', 50)), baseline: `direct p50 at ${rps}/s`, ratio: loadAdded('portkey', 50) / percentile(load.get('direct')!.latencies, 50) },
      { name: `Portkey added p99 at ${rps} req/s`, medianUs: us(loadAdded('portkey', 99)), baseline: `direct p99 at ${rps}/s`, ratio: loadAdded('portkey', 99) / percentile(load.get('direct')!.latencies, 99) },
      { name: `achieved rate SecureGate / Portkey (errors ${load.get('securegate')!.errors}/${load.get('portkey')!.errors})`, medianUs: load.get('securegate')!.achieved, baseline: `Portkey ${load.get('portkey')!.achieved.toFixed(0)}/s`, ratio: load.get('securegate')!.achieved / load.get('portkey')!.achieved },
      { name: 'max throughput SecureGate (req/s in the median column)', medianUs: tput.get('securegate')!, baseline: `direct ${tput.get('direct')!.toFixed(0)}/s`, ratio: tput.get('securegate')! / tput.get('direct')! },
      { name: 'max throughput Portkey (req/s in the median column)', medianUs: tput.get('portkey')!, baseline: `direct ${tput.get('direct')!.toFixed(0)}/s`, ratio: tput.get('portkey')! / tput.get('direct')! },
      { name: 'streaming TTFB added, SecureGate p50', medianUs: us(firstAdded('securegate')), baseline: 'direct TTFB p50', ratio: percentile(first.get('securegate')!, 50) / percentile(first.get('direct')!, 50) },
      { name: 'streaming TTFB added, Portkey p50', medianUs: us(firstAdded('portkey')), baseline: 'direct TTFB p50', ratio: percentile(first.get('portkey')!, 50) / percentile(first.get('direct')!, 50) },
      { name: 'bare relay, 1 hop: added sequential p50', medianUs: us(added('relay1', 50)), baseline: 'direct p50', ratio: added('relay1', 50) / dp50 },
      { name: 'bare relay, 2 hops: added sequential p50', medianUs: us(added('relay2', 50)), baseline: 'direct p50', ratio: added('relay2', 50) / dp50 },
      ...own('sequential p50', added('securegate', 50) - added('relay2', 50), added('portkey', 50) - added('relay1', 50)),
      ...own(`p50 at ${rps} req/s`, loadAdded('securegate', 50) - loadAdded('relay2', 50), loadAdded('portkey', 50) - loadAdded('relay1', 50)),
      ...own('streaming TTFB p50', firstAdded('securegate') - firstAdded('relay2'), firstAdded('portkey') - firstAdded('relay1')),
      { name: 'cold reconstruction (cold − warm first request, p50)', medianUs: us(percentile(cold, 50) - percentile(warm, 50)), baseline: 'warm request p50', ratio: percentile(cold, 50) / percentile(warm, 50) },
      { name: `upload ${smoke ? '16 MiB' : '1 GB'}: host RSS growth (MB in the median column)`, medianUs: upload.hostGrowthMb, baseline: '64 MB goal', ratio: upload.hostGrowthMb / 64 },
      { name: `upload ${smoke ? '16 MiB' : '1 GB'}: enclave RSS growth (MB in the median column)`, medianUs: upload.enclaveGrowthMb, baseline: '64 MB goal', ratio: upload.enclaveGrowthMb / 64 },
      { name: 'upload throughput through both hops (MB/s in the median column)', medianUs: upload.mbPerS, baseline: '-', ratio: 1 },
      { name: 'dev stack resident memory, 7 processes (MB in the median column)', medianUs: stackMb, baseline: '-', ratio: 1 },
    ];
  } finally {
    for (const p of started.reverse()) p.stop();
    await stack.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
