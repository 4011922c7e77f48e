/**
 * Gateway benchmarks against the real dev stack (host, enclave and the dev shareholders' process
 * on loopback), the mock upstream (in a process of its own) and Portkey's gateway as the peer, all
 * in one run: every figure is also given as a ratio to the direct baseline measured in the same
 * run (the machine is shared and noisy). Bare relays (one and two hops of a do-nothing proxy)
 * measure what the hops alone cost here, so each gateway's own processing can be told apart from
 * its process hops. SecureGate is measured twice: as `npm start` runs it (embedded SQLite, one
 * host, one enclave, with the dev stack's Node flags DEV_STACK_NODE_ARGS, so its memory rows
 * describe the dev stack), and in the production layout (PostgreSQL, two host instances behind a
 * client-side balancer, each with an enclave of its own, with production's Node flags, i.e. none),
 * both sharing the shareholders; the PostgreSQL schema is the run's own, dropped after. The
 * throughput phase also reads each process's CPU time (`/proc/<pid>/stat`) and reports it per
 * request: SecureGate's host and enclave beside Portkey's one process and beside the bare relays
 * (what a process hop alone costs in CPU).
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
import { BalancedPool, Pool, type Dispatcher } from 'undici';
import { generateOwnerKeyPair } from '../protocol/index.ts';
import { devPcrPolicy } from '../attestation/dev-pcrs.ts';
import { connectionPolicyFromFlags } from '../cli/connect.ts';
import { connectProvider, createKey } from '../cli/owner.ts';
import { DEV_STACK_NODE_ARGS, startHostInstance, startStack, type ManagedProcess, type Stack, type StackOptions } from '../scripts/stack.ts';
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
  pool: Dispatcher;
  path: string;
  headers: Record<string, string>;
  /** The processes that serve it, by role, whose CPU time the throughput phase reads. */
  processes?: Record<string, number[]>;
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

/** CPU time (user + system) a process has used so far, in µs (`/proc/<pid>/stat`, 100 ticks a second). */
async function cpuMicros(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/**
 * Closed-loop throughput of `concurrency` clients for `ms`, the requests done, and the CPU time
 * (µs) each role of the target's processes used meanwhile.
 */
async function maxThroughput(t: Target, concurrency: number, ms: number): Promise<{ rps: number; done: number; cpu: Record<string, number> }> {
  const roles = Object.entries(t.processes ?? {});
  const cpuNow = async () => Promise.all(roles.map(async ([, pids]) => (await Promise.all(pids.map(cpuMicros))).reduce((a, b) => a + b, 0)));
  const before = await cpuNow();
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
  const after = await cpuNow();
  return { rps: (done * 1000) / ms, done, cpu: Object.fromEntries(roles.map(([role], i) => [role, after[i]! - before[i]!])) };
}

interface LadderStep {
  rate: number;
  achieved: number;
  p99: number;
  errors: number;
}

/**
 * Open-loop load at rising rates, interleaved across targets at each rate; a target leaves the
 * ladder once its p99 exceeds `stopAboveMs`, it fails a request or falls behind the schedule.
 */
async function rateLadder(targets: Target[], rates: number[], stepMs: number, stopAboveMs: number): Promise<Map<string, LadderStep[]>> {
  const out = new Map<string, LadderStep[]>(targets.map((t) => [t.name, []]));
  let climbing = targets;
  for (const rate of rates) {
    for (const t of climbing) {
      const r = await atRate(t, rate, stepMs);
      out.get(t.name)!.push({ rate, achieved: r.achieved, p99: percentile(r.latencies, 99), errors: r.errors });
    }
    climbing = climbing.filter((t) => {
      const step = out.get(t.name)!.at(-1)!;
      return step.p99 <= stopAboveMs && step.errors === 0 && step.achieved >= 0.9 * rate;
    });
    if (climbing.length === 0) break;
  }
  return out;
}

/** The highest rate a target sustained (on schedule, no error) with p99 at or under `boundMs`; 0 if none. */
function throughputAtP99(steps: LadderStep[], boundMs: number): number {
  return Math.max(0, ...steps.filter((s) => s.p99 <= boundMs && s.errors === 0 && s.achieved >= 0.9 * s.rate).map((s) => s.achieved));
}

/** Samples the RSS of `pids` every 100 ms until stopped; answers each pid's peak. */
function sampleRss(pids: number[]): { stop(): Promise<number[]> } {
  const peak = pids.map(() => 0);
  const sample = () => Promise.all(pids.map(async (pid, i) => (peak[i] = Math.max(peak[i]!, await rssMb(pid).catch(() => 0)))));
  let last = sample();
  const timer = setInterval(() => (last = sample()), 100);
  return {
    async stop() {
      clearInterval(timer);
      await last;
      return peak;
    },
  };
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

async function startPortkey(): Promise<{ url: string; pid: number; stop: () => void }> {
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
        if (!exited) return { url, pid: child.pid!, stop: () => child.kill('SIGTERM') };
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    child.kill('SIGKILL');
    if (attempt === 3) throw new Error(`Portkey gateway did not start: ${stderr.trim() || '(no output)'}`);
  }
}

/** Spawns a bench helper process and waits for its `{ "origin" }` line. */
async function spawnOrigin(script: string, env: Record<string, string>): Promise<{ origin: string; pid: number; stop: () => void }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL(script, import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${script} exited (${code})`)));
  });
  return { origin: (JSON.parse(line) as { origin: string }).origin, pid: child.pid!, stop: () => child.kill('SIGTERM') };
}

/** The mock upstream in its own process (see mock-process.ts), with a connection and key to it. */
async function startMockProcess(stack: Stack): Promise<{ origin: string; upstreamKey: string; key: string; stop: () => void }> {
  const upstreamKey = `sk-mock-${randomBytes(16).toString('hex')}`;
  const { origin, stop } = await spawnOrigin('./mock-process.ts', { MOCK_API_KEY: upstreamKey });
  const key = await mockConnectionKey(stack, stack.hostUrl, origin, upstreamKey);
  return { origin, upstreamKey, key, stop };
}

/**
 * A connection to the mock upstream and an SG_ key for it, created through the host at `hostUrl`
 * as `securegate connect` creates one by default: PCR0-2 plus the owner binding, and the default
 * owner-signed connection policy (inference only), which the enclave enforces and meters with
 * signed usage receipts on every request.
 */
async function mockConnectionKey(stack: Stack, hostUrl: string, origin: string, upstreamKey: string): Promise<string> {
  const conn = await connectProvider({
    serverUrl: hostUrl, adminToken: stack.adminToken, ownerSecretKey: generateOwnerKeyPair().secretKey,
    shareholders: stack.shareholders.map(({ id, url, publicKey }) => ({ id, url, publicKey })), threshold: stack.threshold, provider: 'openai',
    baseUrl: origin, name: 'bench (mock upstream process)', apiKey: new TextEncoder().encode(upstreamKey), pcrPolicy: devPcrPolicy(stack.pcr0), dev: true,
    connectionPolicy: connectionPolicyFromFlags('openai', {}),
  });
  return (await createKey(hostUrl, stack.adminToken, conn.id)).key;
}

/**
 * SecureGate's production layout: two more host instances on PostgreSQL (a schema of this run's
 * own), each with an enclave of its own as each parent instance has its Nitro enclave, sharing the
 * stack's shareholders, all run as production runs them — without the dev stack's heap bounds
 * (DEV_STACK_NODE_ARGS), as the README tells operators and the enclave image's init starts node.
 * Undefined when no PostgreSQL answers.
 */
async function startPostgresHosts(stack: Stack, log: (m: string) => void): Promise<{ hosts: Array<ManagedProcess & { url: string }>; enclaves: ManagedProcess[]; stop(): Promise<void> } | undefined> {
  const { skipPostgres, TEST_DATABASE_URL, uniqueSchema, dropSchema } = await import('../test/pg.ts');
  if (skipPostgres) {
    log(`bench: no PostgreSQL at ${TEST_DATABASE_URL}; SecureGate runs on SQLite only`);
    return undefined;
  }
  const schema = uniqueSchema('sg_bench');
  const args = ['--database', TEST_DATABASE_URL, '--db-schema', schema, '--velocity-floor', '100000000'];
  const hosts: Array<ManagedProcess & { url: string }> = [];
  const enclaves: Array<ManagedProcess & { socket: string }> = [];
  const stop = async () => {
    await Promise.all([...hosts, ...enclaves].map((p) => p.stop()));
    await dropSchema(schema);
  };
  try {
    // One after the other: the first host creates the schema's tables.
    for (const name of ['a', 'b']) {
      const enclave = await stack.startEnclaveInstance(`enclave-pg-${name}`);
      enclaves.push(enclave);
      hosts.push(await startHostInstance(stack, args, `host-pg-${name}`, [], enclave.socket));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { hosts, enclaves, stop };
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
    baseUrl: origin, apiKey: new TextEncoder().encode('sk-sink'), pcrPolicy: devPcrPolicy(stack.pcr0), dev: true, authScheme: 'bearer', allowRules: ['PUT /upload'],
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

/**
 * The benchmark's stack: the mock upstream, and every SecureGate process with `npm start`'s Node
 * flags, so that the RSS rows describe the dev stack.
 */
export function benchStackOptions(dataDir: string): StackOptions {
  return {
    dataDir,
    hostPort: 0,
    mock: true,
    // Abuse detection would (rightly) suspend a key doing thousands of requests a minute.
    hostArgs: ['--velocity-floor', '100000000'],
    hostNodeArgs: [...DEV_STACK_NODE_ARGS],
    enclaveNodeArgs: [...DEV_STACK_NODE_ARGS],
    shareholderNodeArgs: DEV_STACK_NODE_ARGS,
  };
}

export async function gatewayBenchmarks(options: GatewayBenchOptions): Promise<BenchFigure[]> {
  const { log, smoke } = options;
  const dataDir = await mkdtemp(join(tmpdir(), 'sg-bench-'));
  const stack = await startStack(benchStackOptions(dataDir));
  // Everything started is stopped, even when a later start fails.
  const started: Array<{ stop: () => void }> = [];
  const keep = <T extends { stop: () => void }>(p: T): T => (started.push(p), p);
  let postgres: Awaited<ReturnType<typeof startPostgresHosts>>;
  try {
    const portkey = keep(await startPortkey());
    const upstream = keep(await startMockProcess(stack));
    postgres = smoke && process.env.BENCH_POSTGRES !== '1' ? undefined : await startPostgresHosts(stack, log);
    // Bare relays: one hop (Portkey's shape), and two chained hops (SecureGate's: host, enclave).
    const relay1 = keep(await spawnOrigin('./relay-process.ts', { RELAY_TARGET: upstream.origin }));
    const relay2b = keep(await spawnOrigin('./relay-process.ts', { RELAY_TARGET: upstream.origin }));
    const relay2 = keep(await spawnOrigin('./relay-process.ts', { RELAY_TARGET: relay2b.origin }));
    const mk = (name: string, base: string, path: string, headers: Record<string, string>, processes?: Record<string, number[]>): Target => ({ name, pool: new Pool(base, { connections: 256, pipelining: 1 }), path, headers, ...(processes ? { processes } : {}) });
    const direct = mk('direct', upstream.origin, '/v1/chat/completions', { authorization: `Bearer ${upstream.upstreamKey}` });
    const enclavePid = stack.enclave.child.pid!;
    const gateway = mk('securegate', stack.hostUrl, '/v1/chat/completions', { authorization: `Bearer ${upstream.key}` }, { host: [stack.host.child.pid!], enclave: [enclavePid] });
    const peer = mk('portkey', portkey.url, '/v1/chat/completions', {
      authorization: `Bearer ${upstream.upstreamKey}`,
      'x-portkey-provider': 'openai',
      'x-portkey-custom-host': `${upstream.origin}/v1`,
    }, { gateway: [portkey.pid] });
    const bare1 = mk('relay1', relay1.origin, '/v1/chat/completions', { authorization: `Bearer ${upstream.upstreamKey}` }, { relays: [relay1.pid] });
    const bare2 = mk('relay2', relay2.origin, '/v1/chat/completions', { authorization: `Bearer ${upstream.upstreamKey}` }, { relays: [relay2.pid, relay2b.pid] });
    // Two hosts on PostgreSQL behind a client-side balancer, as a load balancer would spread them.
    const gatewayPg: Target | undefined = postgres && {
      name: 'securegate-pg',
      pool: new BalancedPool(postgres.hosts.map((h) => h.url), { connections: 128, pipelining: 1 }),
      path: '/v1/chat/completions',
      headers: { authorization: `Bearer ${await mockConnectionKey(stack, postgres.hosts[0]!.url, upstream.origin, upstream.upstreamKey)}` },
      processes: { host: postgres.hosts.map((h) => h.child.pid!), enclave: postgres.enclaves.map((e) => e.child.pid!) },
    };
    const gateways = gatewayPg ? [gateway, gatewayPg] : [gateway];
    const targets = [direct, ...gateways, peer, bare1, bare2];
    // Resident memory of each gateway's own processes (the shareholders serve both of SecureGate's layouts).
    const memory = { securegate: [stack.host, stack.enclave, stack.shareholderProcess()!].map((p) => p.child.pid!), 'securegate-pg': postgres ? [...postgres.hosts, ...postgres.enclaves].map((p) => p.child.pid!) : [], portkey: [portkey.pid] };
    const memoryNames = Object.keys(memory) as Array<keyof typeof memory>;
    const totalRss = async (pids: number[]) => (await Promise.all(pids.map(rssMb))).reduce((a, b) => a + b, 0);
    const idle = Object.fromEntries(await Promise.all(memoryNames.map(async (k) => [k, await totalRss(memory[k])] as const)));
    const underLoad = sampleRss(memoryNames.flatMap((k) => memory[k]));
    const n = smoke ? 20 : 400;
    // Warm-up at load, then sequentially, for every target alike: gateways run for days, and V8
    // optimises a large code base for a long time (a host still spent 11 % of its CPU on its
    // compiler threads after 11 000 requests, each function optimised once), so the measured
    // phases should see as little of that tier-up as a benchmark of minutes allows.
    log(`bench: warm-up (${smoke ? 0.1 : 3} s at 32 clients per target), then ${n} sequential requests per target in interleaved rounds`);
    for (const t of targets) await maxThroughput(t, 32, smoke ? 100 : 3000);
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
    log('bench: maximum throughput (32 concurrent clients) and CPU per request, interleaved rounds');
    const tputRuns = await interleaved([direct, ...gateways, peer, bare1, bare2], 3, (t) => maxThroughput(t, 32, smoke ? 100 : 1000));
    const tput = new Map([...tputRuns].map(([name, runs]) => [name, runs.reduce((a, r) => a + r.rps, 0) / runs.length]));
    /** CPU µs per request of one role of a target's processes, over every round of the throughput phase. */
    const cpuUs = (name: string, role: string) => {
      const runs = tputRuns.get(name)!;
      return runs.reduce((a, r) => a + (r.cpu[role] ?? 0), 0) / Math.max(1, runs.reduce((a, r) => a + r.done, 0));
    };
    const ladderRates = smoke ? [50, 100] : [100, 200, 400, 700, 1000, 1400, 2000, 2800, 4000];
    log(`bench: throughput at p99 ≤ 1 / 5 / 10 ms (open loop at ${ladderRates.join(', ')} req/s, ${smoke ? 200 : 1000} ms each)`);
    const ladder = await rateLadder([direct, ...gateways, peer], ladderRates, smoke ? 200 : 1000, 10);
    const peaks = await underLoad.stop();
    const peak = Object.fromEntries(memoryNames.map((k) => [k, memory[k].reduce((sum, pid) => sum + peaks[memoryNames.flatMap((n) => memory[n]).indexOf(pid)]!, 0)]));
    await new Promise((r) => setTimeout(r, smoke ? 200 : 3000));
    const after = Object.fromEntries(await Promise.all(memoryNames.map(async (k) => [k, await totalRss(memory[k])] as const)));
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
    const stackMb = await totalRss(memory.securegate);
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
    const label: Record<string, string> = { securegate: 'SecureGate', 'securegate-pg': 'SecureGate on PostgreSQL, 2 hosts', portkey: 'Portkey' };
    const peers = [...gateways.map((g) => g.name), 'portkey'];
    const loadP = (p: number) => percentile(load.get('direct')!.latencies, p);
    const latencyRows = (name: string): BenchFigure[] => [
      { name: `${label[name]} added latency, sequential p50`, medianUs: us(added(name, 50)), baseline: 'direct p50', ratio: added(name, 50) / dp50 },
      { name: `${label[name]} added p99 at concurrency 1 (sequential)`, medianUs: us(added(name, 99)), baseline: 'direct p99', ratio: added(name, 99) / percentile(d, 99) },
      { name: `${label[name]} added p50 at ${rps} req/s`, medianUs: us(loadAdded(name, 50)), baseline: `direct p50 at ${rps}/s`, ratio: loadAdded(name, 50) / loadP(50) },
      { name: `${label[name]} added p99 at ${rps} req/s`, medianUs: us(loadAdded(name, 99)), baseline: `direct p99 at ${rps}/s`, ratio: loadAdded(name, 99) / loadP(99) },
      { name: `max throughput ${label[name]} (req/s in the median column)`, medianUs: tput.get(name)!, baseline: `direct ${tput.get('direct')!.toFixed(0)}/s`, ratio: tput.get(name)! / tput.get('direct')! },
      { name: `streaming TTFB added, ${label[name]} p50`, medianUs: us(firstAdded(name)), baseline: 'direct TTFB p50', ratio: percentile(first.get(name)!, 50) / percentile(first.get('direct')!, 50) },
    ];
    const capacityRows = (name: string): BenchFigure[] =>
      [1, 5, 10].map((bound) => ({
        name: `${label[name]} throughput at p99 ≤ ${bound} ms (req/s in the median column)`,
        medianUs: throughputAtP99(ladder.get(name)!, bound),
        baseline: `direct ${throughputAtP99(ladder.get('direct')!, bound).toFixed(0)}/s (ladder top ${ladderRates.at(-1)}/s)`,
        ratio: throughputAtP99(ladder.get(name)!, bound) / Math.max(1, throughputAtP99(ladder.get('direct')!, bound)),
      }));
    const memoryWhat: Record<string, string> = { securegate: 'host + enclave + shareholders', 'securegate-pg': 'its 2 hosts + 2 enclaves', portkey: '1 process' };
    const memoryRows = (name: keyof typeof memory): BenchFigure[] =>
      name === 'securegate-pg' && !gatewayPg
        ? []
        : ([['idle', idle], ['under load (peak)', peak], ['after load', after]] as const).map(([when, mb]) => ({
            name: `${label[name]} RSS ${when}, ${memoryWhat[name]} (MB in the median column)`,
            medianUs: mb[name]!,
            baseline: `Portkey ${mb.portkey!.toFixed(0)} MB`,
            ratio: mb[name]! / mb.portkey!,
          }));
    const loadErrors = peers.map((name) => load.get(name)!.errors).join('/');
    // CPU per request at 32 clients: SecureGate's two processes beside Portkey's one, and each
    // beside a bare relay (the floor any process hop costs here: an HTTP server and an undici client).
    const relayUs = cpuUs('relay1', 'relays');
    const relayBaseline = `bare relay ${relayUs.toFixed(0)} µs`;
    // A smoke run's rounds can be shorter than one 10 ms tick of process CPU time.
    const per = (a: number, b: number) => (b > 0 ? a / b : 0);
    const cpuRows = (name: string): BenchFigure[] => {
      // The production layout's rows sum both hosts and both enclaves (per request served by either).
      const [hosts, enclaves] = name === 'securegate-pg' ? ['hosts', 'enclaves'] : ['host', 'enclave'];
      const [host, enclave, portkeyUs] = [cpuUs(name, 'host'), cpuUs(name, 'enclave'), cpuUs('portkey', 'gateway')];
      return [
        { name: `CPU per request at 32 clients: ${label[name]} ${hosts} + ${enclaves} (µs)`, medianUs: host + enclave, baseline: `Portkey ${portkeyUs.toFixed(0)} µs`, ratio: per(host + enclave, portkeyUs) },
        { name: `CPU per request at 32 clients: ${label[name]} ${hosts} (µs)`, medianUs: host, baseline: relayBaseline, ratio: per(host, relayUs) },
        { name: `CPU per request at 32 clients: ${label[name]} ${enclaves} (µs)`, medianUs: enclave, baseline: relayBaseline, ratio: per(enclave, relayUs) },
      ];
    };
    return [
      { name: 'direct → mock, sequential p50 (baseline)', medianUs: us(dp50), baseline: '-', ratio: 1 },
      ...peers.flatMap(latencyRows),
      { name: `achieved rate SecureGate / Portkey (errors ${loadErrors})`, medianUs: load.get('securegate')!.achieved, baseline: `Portkey ${load.get('portkey')!.achieved.toFixed(0)}/s`, ratio: load.get('securegate')!.achieved / load.get('portkey')!.achieved },
      ...peers.flatMap(capacityRows),
      ...gateways.map((g) => g.name).flatMap(cpuRows),
      { name: 'CPU per request at 32 clients: Portkey (µs)', medianUs: cpuUs('portkey', 'gateway'), baseline: relayBaseline, ratio: per(cpuUs('portkey', 'gateway'), relayUs) },
      { name: 'CPU per request at 32 clients: bare relays, 2 hops (µs)', medianUs: cpuUs('relay2', 'relays'), baseline: relayBaseline, ratio: per(cpuUs('relay2', 'relays'), relayUs) },
      ...memoryNames.flatMap(memoryRows),
      { name: 'bare relay, 1 hop: added sequential p50', medianUs: us(added('relay1', 50)), baseline: 'direct p50', ratio: added('relay1', 50) / dp50 },
      { name: 'bare relay, 2 hops: added sequential p50', medianUs: us(added('relay2', 50)), baseline: 'direct p50', ratio: added('relay2', 50) / dp50 },
      ...own('sequential p50', added('securegate', 50) - added('relay2', 50), added('portkey', 50) - added('relay1', 50)),
      ...own(`p50 at ${rps} req/s`, loadAdded('securegate', 50) - loadAdded('relay2', 50), loadAdded('portkey', 50) - loadAdded('relay1', 50)),
      ...own('streaming TTFB p50', firstAdded('securegate') - firstAdded('relay2'), firstAdded('portkey') - firstAdded('relay1')),
      ...(gatewayPg
        ? [{ name: 'SecureGate on PostgreSQL, 2 hosts: own processing, sequential p50 (added − 2 bare hops)', medianUs: us(added('securegate-pg', 50) - added('relay2', 50)), baseline: 'Portkey − 1 bare hop', ratio: (added('securegate-pg', 50) - added('relay2', 50)) / (added('portkey', 50) - added('relay1', 50)) }]
        : []),
      { name: 'cold reconstruction (cold − warm first request, p50)', medianUs: us(percentile(cold, 50) - percentile(warm, 50)), baseline: 'warm request p50', ratio: percentile(cold, 50) / percentile(warm, 50) },
      { name: `upload ${smoke ? '16 MiB' : '1 GB'}: host RSS growth (MB in the median column)`, medianUs: upload.hostGrowthMb, baseline: '64 MB goal', ratio: upload.hostGrowthMb / 64 },
      { name: `upload ${smoke ? '16 MiB' : '1 GB'}: enclave RSS growth (MB in the median column)`, medianUs: upload.enclaveGrowthMb, baseline: '64 MB goal', ratio: upload.enclaveGrowthMb / 64 },
      { name: 'upload throughput through both hops (MB/s in the median column)', medianUs: upload.mbPerS, baseline: '-', ratio: 1 },
      { name: 'dev stack RSS after the benchmark: host, enclave, shareholders process (MB in the median column)', medianUs: stackMb, baseline: '600 MB goal', ratio: stackMb / 600 },
    ];
  } finally {
    for (const p of started.reverse()) p.stop();
    await postgres?.stop();
    await stack.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
