/**
 * `npm run soak [-- --seconds 180 --rate <req/s> --concurrency 32 --max-requests 500000]`: two
 * host instances on one PostgreSQL (a database of their own, so its statistics are theirs alone),
 * with the dev enclave, five shareholders and the mock upstream, driven for a bounded time and
 * count. Without --rate the load is closed-loop (`--concurrency` requests always in flight), which
 * is the highest rate this machine sustains; with --rate it is open-loop at that rate.
 *
 * The traffic is what an operator's load test sends: an uncapped key and a capped key, split over
 * both hosts, while every `--kill-every` seconds a fresh key is warmed on both hosts, killed
 * through one and polled on the other until refused. Printed: requests served, refusals and
 * failures, deadlocks (pg_stat_database), spend counters against the audit trail, reservations
 * left open, kill latency, and RSS of every process over time. Exits 1 when a correctness check
 * fails (never on a time).
 *
 * The pieces (two hosts, load, kill probe, reconciliation) are exported for test/e2e/pg-*.test.ts.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Pool } from 'undici';
import { startHostInstance, startStack, type ManagedProcess, type Stack } from '../scripts/stack.ts';
import { deadlocks, isolatedDatabase } from '../test/pg.ts';

const BODY = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: 'Say hello' }] });

export interface TwoHosts {
  stack: Stack;
  second: ManagedProcess & { url: string };
  /** Host A (the stack's) and host B. */
  urls: [string, string];
  databaseUrl: string;
  databaseName: string;
  /** A direct connection to the hosts' database, for checks. */
  sql: pg.Client;
  admin<T = Record<string, unknown>>(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T; ms: number }>;
  newKey(options?: Record<string, unknown>): Promise<{ id: string; key: string }>;
  /** Stops both hosts (they flush their audit rows and end their database sessions). */
  stopHosts(): Promise<void>;
  stop(): Promise<void>;
}

/** Two hosts sharing a fresh PostgreSQL database, as docs/deploy.md lays them out. */
export async function startTwoHosts(): Promise<TwoHosts> {
  const database = await isolatedDatabase('sg_soak');
  const dataDir = await mkdtemp(join(tmpdir(), 'sg-soak-'));
  // No velocity suspension: a load test is exactly the spike it is there to catch.
  const hostArgs = ['--database', database.url, '--velocity-floor', '1000000000'];
  let stack: Stack | undefined;
  let second: (ManagedProcess & { url: string }) | undefined;
  const sql = new pg.Client({ connectionString: database.url });
  try {
    // On a loaded machine a process can miss its 30 s start-up deadline: try once more.
    for (let attempt = 1; !stack; attempt++) {
      try {
        stack = await startStack({ dataDir, hostPort: 0, mock: true, hostArgs });
      } catch (e) {
        await stopStragglers(dataDir);
        if (attempt === 2) throw e;
      }
    }
    second = await startHostInstance(stack, hostArgs);
    await sql.connect();
  } catch (e) {
    await stack?.stop();
    await stopStragglers(dataDir);
    await rm(dataDir, { recursive: true, force: true });
    await database.drop();
    throw e;
  }
  const s = stack;
  const b = second;
  const admin = async <T,>(url: string, method: string, path: string, body?: unknown) => {
    const t0 = performance.now();
    const res = await fetch(`${url}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${s.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
    return { status: res.status, body: (await res.json()) as T, ms: performance.now() - t0 };
  };
  return {
    stack: s,
    second: b,
    urls: [s.hostUrl, b.url],
    databaseUrl: database.url,
    databaseName: database.name,
    sql,
    admin,
    async newKey(options = {}) {
      const res = await admin<{ id: string; key: string }>(s.hostUrl, 'POST', '/keys', { connectionId: s.demo!.connectionId, ...options });
      if (res.status !== 201 && res.status !== 200) throw new Error(`key creation failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    },
    async stopHosts() {
      await Promise.all([s.host.stop(), b.stop()]);
    },
    async stop() {
      await Promise.all([s.stop(), b.stop()]);
      await sql.end().catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
      await database.drop();
    },
  };
}

/**
 * Ends the processes this run started under `dataDir` (a fresh temporary directory, so nothing
 * else can match) that a failed start left behind: startStack stops only what it recorded.
 */
async function stopStragglers(dataDir: string): Promise<void> {
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(`${dataDir}/`)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

export interface LoadStats {
  served: number;
  /** Refusals by code (a killed key's requests, budget_exceeded, …). */
  refused: Record<string, number>;
  /** Anything else: 5xx, transport errors (first few kept). */
  failed: number;
  failures: string[];
}

/** One chat request; returns null when served, else the refusal code (or a failure text). */
async function ask(pool: Pool, key: string): Promise<{ ok: true } | { ok: false; status: number; code: string }> {
  try {
    const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: BODY, headersTimeout: 30_000, bodyTimeout: 30_000 });
    const text = await res.body.text();
    if (res.statusCode === 200) return { ok: true };
    let code = `status ${res.statusCode}`;
    try {
      code = ((JSON.parse(text) as { error?: { code?: string } }).error?.code ?? code) as string;
    } catch {
      // not JSON: keep the status
    }
    return { ok: false, status: res.statusCode, code };
  } catch (e) {
    return { ok: false, status: 0, code: (e as Error).message };
  }
}

export interface Load {
  stats: LoadStats;
  /** Settles when the load ends by itself (time or count reached). */
  done: Promise<LoadStats>;
  stop(): Promise<LoadStats>;
}

/**
 * Sends requests with `keys` to every host in turn until stopped, `maxRequests` were sent, or
 * `seconds` passed: closed-loop with `concurrency` in flight, or open-loop at `rate` per second.
 */
export function startLoad(urls: string[], keys: string[], o: { concurrency: number; rate?: number; maxRequests?: number; seconds?: number }): Load {
  const pools = urls.map((u) => new Pool(u, { connections: Math.max(1, Math.ceil(o.concurrency / urls.length)), pipelining: 1 }));
  const stats: LoadStats = { served: 0, refused: {}, failed: 0, failures: [] };
  const until = o.seconds === undefined ? Infinity : Date.now() + o.seconds * 1000;
  const max = o.maxRequests ?? Infinity;
  let sent = 0;
  let stopped = false;
  const one = async () => {
    const i = sent++;
    const r = await ask(pools[i % pools.length]!, keys[Math.floor(i / pools.length) % keys.length]!);
    if (r.ok) stats.served++;
    else if (r.status >= 400 && r.status < 500) stats.refused[r.code] = (stats.refused[r.code] ?? 0) + 1;
    else {
      stats.failed++;
      if (stats.failures.length < 10) stats.failures.push(`${r.status} ${r.code}`);
    }
  };
  const more = () => !stopped && sent < max && Date.now() < until;
  let running: Promise<unknown>;
  if (o.rate === undefined) {
    running = Promise.all(Array.from({ length: o.concurrency }, async () => {
      while (more()) await one();
    }));
  } else {
    const rate = o.rate;
    running = (async () => {
      const inflight = new Set<Promise<void>>();
      const start = performance.now();
      for (let n = 0; more(); n++) {
        const wait = start + (n * 1000) / rate - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        // Beyond this many in flight the machine is not sustaining the rate: do not pile on.
        if (inflight.size >= 512) await Promise.race(inflight);
        const p = one().finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await Promise.all(inflight);
    })();
  }
  const done = running.then(async () => {
    await Promise.all(pools.map((p) => p.close()));
    return stats;
  });
  return {
    stats,
    done,
    stop() {
      stopped = true;
      return done;
    },
  };
}

export interface KillMeasurement {
  /** From sending the kill (through `via`) to the first refusal on the other host. */
  refusedAfterMs: number;
  /** How long the kill request itself took to answer. */
  adminMs: number;
  code: string;
}

export interface KillProbe {
  keyId: string;
  /** Kills the key through `urls[via]` and polls the other host until it refuses the key (10 s at most). */
  fire(via: 0 | 1): Promise<KillMeasurement>;
  close(): Promise<void>;
}

/** A fresh key served once by each host, so both have it cached when it is killed. */
export async function prepareKill(hosts: TwoHosts): Promise<KillProbe> {
  const key = await hosts.newKey();
  const pools = hosts.urls.map((u) => new Pool(u, { connections: 1 }));
  for (const p of pools) {
    const warm = await ask(p, key.key);
    if (!warm.ok) throw new Error(`kill probe: warm-up refused with ${warm.code}`);
  }
  return {
    keyId: key.id,
    async fire(via) {
      const t0 = performance.now();
      const killed = await hosts.admin(hosts.urls[via], 'POST', `/keys/${key.id}/kill`);
      if (killed.status !== 200) throw new Error(`kill answered ${killed.status}`);
      const other = pools[1 - via]!;
      for (;;) {
        const r = await ask(other, key.key);
        if (!r.ok && r.status > 0) return { refusedAfterMs: performance.now() - t0, adminMs: killed.ms, code: r.code };
        if (performance.now() - t0 > 10_000) throw new Error('kill probe: the other host still served the killed key after 10 s');
      }
    },
    close: () => Promise.all(pools.map((p) => p.close())).then(() => undefined),
  };
}

export async function measureKill(hosts: TwoHosts, via: 0 | 1): Promise<KillMeasurement> {
  const probe = await prepareKill(hosts);
  try {
    return await probe.fire(via);
  } finally {
    await probe.close();
  }
}

export interface Reconciliation {
  /** Sums over every key's daily counters, lifetime counters and the project's daily counters. */
  counters: { keyDay: number; keyLife: number; projectDay: number; requests: number; reserved: number };
  /** Sum of audited costs, and audited requests that were served (no refusal code). */
  audit: { cost: number; served: number };
  openReservations: number;
}

/** Spend counters against the audit trail (all keys, or only `keyIds`; project sums need all). */
export async function reconcile(sql: pg.Client, keyIds?: string[]): Promise<Reconciliation> {
  const only = keyIds ? ' AND scope_id = ANY($1)' : '';
  const params = keyIds ? [keyIds] : [];
  const sum = async (where: string) =>
    (await sql.query(`SELECT COALESCE(SUM(spent), 0)::bigint AS spent, COALESCE(SUM(requests), 0)::bigint AS requests, COALESCE(SUM(reserved), 0)::bigint AS reserved FROM spend_counters WHERE ${where}${only}`, params)).rows[0] as Record<string, string>;
  const keyDay = await sum("scope = 'key' AND period LIKE 'd:%'");
  const keyLife = await sum("scope = 'key' AND period = 'life'");
  const projectDay = keyIds ? { spent: '0' } : await sum("scope = 'project' AND period LIKE 'd:%'");
  const audit = (await sql.query(`SELECT COALESCE(SUM(cost_micros), 0)::bigint AS cost, COUNT(*) FILTER (WHERE code IS NULL)::int AS served FROM audit_log WHERE true${keyIds ? ' AND key_id = ANY($1)' : ''}`, params)).rows[0] as Record<string, string>;
  const open = (await sql.query(`SELECT COUNT(*)::int AS n FROM reservations WHERE reclaimed = 0${keyIds ? ' AND key_id = ANY($1)' : ''}`, params)).rows[0] as { n: number };
  return {
    counters: { keyDay: Number(keyDay.spent), keyLife: Number(keyLife.spent), projectDay: Number(projectDay.spent), requests: Number(keyDay.requests), reserved: Number(keyDay.reserved) },
    audit: { cost: Number(audit.cost), served: Number(audit.served) },
    openReservations: open.n,
  };
}

/** Waits until no reservation is open (every settlement written), up to `timeoutMs`. */
export async function settled(sql: pg.Client, timeoutMs = 30_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await sql.query('SELECT COUNT(*)::int AS n FROM reservations WHERE reclaimed = 0');
    if ((rows[0] as { n: number }).n === 0) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function rssMb(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 102.4) / 10;
}

export interface SoakOptions {
  seconds: number;
  /** Open-loop rate (req/s); closed-loop at `concurrency` when absent. */
  rate?: number;
  concurrency: number;
  maxRequests: number;
  killEverySeconds: number;
  sampleEverySeconds: number;
  log: (line: string) => void;
}

export interface SoakReport {
  seconds: number;
  load: LoadStats;
  requestsPerSecond: number;
  deadlocks: number;
  reconciliation: Reconciliation;
  kills: KillMeasurement[];
  killFailures: string[];
  rss: Array<{ atSeconds: number } & Record<string, number>>;
  /** Every correctness check that failed (empty when the run is correct). */
  problems: string[];
}

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const hosts = await startTwoHosts();
  try {
    const uncapped = await hosts.newKey();
    // Capped high enough that the run never reaches it, low enough that every request reserves.
    const capped = await hosts.newKey({ dailyLimit: 100_000 });
    const before = await deadlocks(hosts.databaseName);
    const processes: Record<string, number | undefined> = {
      hostA: hosts.stack.host.child.pid,
      hostB: hosts.second.child.pid,
      enclave: hosts.stack.enclave.child.pid,
      driver: process.pid,
    };
    const rss: SoakReport['rss'] = [];
    const started = performance.now();
    const sample = async () => {
      const row: { atSeconds: number } & Record<string, number> = { atSeconds: Math.round((performance.now() - started) / 1000) };
      for (const [name, pid] of Object.entries(processes)) row[name] = await rssMb(pid);
      rss.push(row);
      o.log(`t=${row.atSeconds}s served=${load.stats.served} failed=${load.stats.failed} rss MB ${Object.entries(processes).map(([n]) => `${n}=${row[n]}`).join(' ')}`);
    };
    const load = startLoad(hosts.urls, [uncapped.key, capped.key], { concurrency: o.concurrency, ...(o.rate ? { rate: o.rate } : {}), maxRequests: o.maxRequests, seconds: o.seconds });
    const kills: KillMeasurement[] = [];
    const killFailures: string[] = [];
    let via: 0 | 1 = 0;
    await sample();
    let nextSample = performance.now() + o.sampleEverySeconds * 1000;
    let nextKill = performance.now() + o.killEverySeconds * 1000;
    let loadDone = false;
    const finished = load.done.then(() => {
      loadDone = true;
    });
    while (!loadDone) {
      const now = performance.now();
      if (now >= nextKill) {
        try {
          const k = await measureKill(hosts, via);
          kills.push(k);
          o.log(`kill via host ${via ? 'B' : 'A'}: answered in ${k.adminMs.toFixed(0)} ms, refused on the other host after ${k.refusedAfterMs.toFixed(0)} ms (${k.code})`);
        } catch (e) {
          killFailures.push((e as Error).message);
          o.log(`kill probe failed: ${(e as Error).message}`);
        }
        via = via === 0 ? 1 : 0;
        nextKill = performance.now() + o.killEverySeconds * 1000;
      }
      if (now >= nextSample) {
        await sample();
        nextSample = performance.now() + o.sampleEverySeconds * 1000;
      }
      await Promise.race([finished, new Promise((r) => setTimeout(r, 100))]);
    }
    const stats = await load.stop();
    const elapsed = (performance.now() - started) / 1000;
    await sample();
    const allSettled = await settled(hosts.sql);
    // Stopping the hosts flushes their audit rows and ends their sessions (which report statistics).
    await hosts.stopHosts();
    const reconciliation = await reconcile(hosts.sql);
    const after = await deadlocks(hosts.databaseName);
    const problems: string[] = [];
    if (!allSettled) problems.push('reservations still open 30 s after the load stopped');
    if (after !== before) problems.push(`${after - before} deadlocks`);
    const { counters, audit } = reconciliation;
    if (counters.keyDay !== audit.cost || counters.keyLife !== audit.cost || counters.projectDay !== audit.cost) {
      problems.push(`spend counters (key/day ${counters.keyDay}, key/life ${counters.keyLife}, project/day ${counters.projectDay}) differ from audited cost ${audit.cost}`);
    }
    if (counters.requests !== audit.served) problems.push(`counted requests ${counters.requests} differ from audited served requests ${audit.served}`);
    if (counters.reserved !== 0) problems.push(`${counters.reserved} micro-dollars still reserved`);
    if (reconciliation.openReservations !== 0) problems.push(`${reconciliation.openReservations} reservations open`);
    if (stats.failed > 0) problems.push(`${stats.failed} requests failed: ${stats.failures.join('; ')}`);
    if (killFailures.length > 0) problems.push(...killFailures);
    return { seconds: elapsed, load: stats, requestsPerSecond: stats.served / elapsed, deadlocks: after - before, reconciliation, kills, killFailures, rss, problems };
  } finally {
    await hosts.stop();
  }
}

function printReport(r: SoakReport, log: (line: string) => void): void {
  const kills = r.kills.map((k) => k.refusedAfterMs).sort((a, b) => a - b);
  const admin = r.kills.map((k) => k.adminMs).sort((a, b) => a - b);
  const pct = (xs: number[], p: number) => (xs.length ? xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!.toFixed(0) : '-');
  log('');
  log(`duration            ${r.seconds.toFixed(1)} s`);
  log(`requests served     ${r.load.served} (${r.requestsPerSecond.toFixed(1)}/s over both hosts)`);
  log(`refused             ${JSON.stringify(r.load.refused)}`);
  log(`failed              ${r.load.failed}${r.load.failures.length ? ` (${r.load.failures.join('; ')})` : ''}`);
  log(`deadlocks           ${r.deadlocks}`);
  const c = r.reconciliation;
  log(`spend (micro-$)     counters key/day ${c.counters.keyDay}, key/life ${c.counters.keyLife}, project/day ${c.counters.projectDay}; audit ${c.audit.cost}`);
  log(`requests counted    ${c.counters.requests}; audited as served ${c.audit.served}`);
  log(`open reservations   ${c.openReservations} (reserved ${c.counters.reserved})`);
  log(`kill latency (ms)   n=${kills.length} p50 ${pct(kills, 50)} max ${pct(kills, 100)}; kill request answered p50 ${pct(admin, 50)} max ${pct(admin, 100)}`);
  log('rss (MB) over time:');
  const names = Object.keys(r.rss[0] ?? {}).filter((k) => k !== 'atSeconds');
  log(`  t(s)  ${names.map((n) => n.padStart(8)).join('')}`);
  for (const row of r.rss) log(`  ${String(row.atSeconds).padStart(4)}  ${names.map((n) => String(row[n]).padStart(8)).join('')}`);
  log(r.problems.length ? `PROBLEMS:\n  ${r.problems.join('\n  ')}` : 'correct: no deadlock, counters equal the audit trail, nothing left open, every kill refused');
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '180' },
      rate: { type: 'string' },
      concurrency: { type: 'string', default: '32' },
      'max-requests': { type: 'string', default: '500000' },
      'kill-every': { type: 'string', default: '10' },
      'sample-every': { type: 'string', default: '10' },
    },
  });
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const report = await runSoak({
    seconds: Number(values.seconds),
    ...(values.rate ? { rate: Number(values.rate) } : {}),
    concurrency: Number(values.concurrency),
    maxRequests: Number(values['max-requests']),
    killEverySeconds: Number(values['kill-every']),
    sampleEverySeconds: Number(values['sample-every']),
    log,
  });
  printReport(report, log);
  process.exit(report.problems.length ? 1 : 0);
}
