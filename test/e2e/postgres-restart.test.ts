/**
 * PostgreSQL restarted under load (a private server this test starts with the machine's
 * PostgreSQL binaries, so the shared one is never disturbed): the host recovers by itself, its
 * LISTEN channel comes back (a kill still reaches it), and no audit row of a served request is lost.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, freePort, startTestStack } from './helpers.ts';

const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql') : [];
const bin = versions.length ? `/usr/lib/postgresql/${versions.sort().at(-1)}/bin` : '';
const canRun = bin !== '' && existsSync(`${bin}/initdb`) && process.getuid?.() === 0;
if (!canRun) process.stderr.write('\n[skip] PostgreSQL restart test: needs the PostgreSQL server binaries and root (to run them as postgres)\n');
if (!canRun && process.env.CI === 'true') throw new Error('the PostgreSQL restart test must run under CI=true (PostgreSQL binaries and root are on this machine kind)');

let dir: string;
const asPostgres = (args: string[]) => execFileSync('runuser', ['-u', 'postgres', '--', ...args], { stdio: 'pipe' });
const idOf = (flag: '-u' | '-g') => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());

/** Starts the private server, on another port if the one picked was taken meanwhile; a failure carries the server's own log. */
async function startPrivateServer(data: string): Promise<number> {
  const log = join(dir, 'pg.log');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      asPostgres([`${bin}/pg_ctl`, '-D', data, '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, '-l', log, '-w', 'start']);
      return port;
    } catch (e) {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : '(no log)';
      if (attempt === 3) throw new Error(`private PostgreSQL did not start (3 attempts); last log:\n${tail}`, { cause: e });
      process.stderr.write(`private PostgreSQL did not start on port ${port}, trying another; log:\n${tail}\n`);
    }
  }
}

describe.skipIf(!canRun)('PostgreSQL restarted under load', () => {
  let stack: Awaited<ReturnType<typeof startTestStack>>;
  let port: number;
  let url: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sg-pgr-'));
    chownSync(dir, idOf('-u'), idOf('-g'));
    const data = join(dir, 'data');
    asPostgres([`${bin}/initdb`, '-D', data, '-A', 'trust', '-U', 'postgres']);
    port = await startPrivateServer(data);
    url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    stack = await startTestStack({ hostArgs: ['--database', url, '--velocity-floor', '100000000'] });
  }, 120_000);
  afterAll(async () => {
    if (process.env.SG_DEBUG_LOGS && stack) execFileSync('cp', ['-r', join(stack.dataDir, 'logs'), process.env.SG_DEBUG_LOGS]);
    await stack?.cleanup();
    try {
      asPostgres([`${bin}/pg_ctl`, '-D', join(dir, 'data'), '-m', 'immediate', 'stop']);
    } catch {
      // already stopped
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('recovers by itself and loses no audit row of a served request', { timeout: 120_000 }, async () => {
    const created = (await (
      await fetch(`${stack.hostUrl}/admin/v1/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ connectionId: stack.demo!.connectionId }),
      })
    ).json()) as { id: string; key: string };
    const client = new OpenAI({ apiKey: created.key, baseURL: `${stack.hostUrl}/v1`, maxRetries: 0 });
    let served = 0;
    let failed = 0;
    const failures: string[] = [];
    let stop = false;
    const load = (async () => {
      while (!stop) {
        await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).then(
          () => void served++,
          (e: { status?: number; message?: string }) => {
            failed++;
            failures.push(`${e.status ?? '-'} ${e.message ?? ''}`);
            expect(e.status === undefined || e.status >= 500).toBe(true);
          },
        );
      }
    })();
    await eventually(async () => (served >= 20 ? true : undefined));
    // Asynchronously (the mock upstream lives in this process), with the server's output in the
    // log file rather than inherited pipes.
    await promisify(execFile)('runuser', ['-u', 'postgres', '--', `${bin}/pg_ctl`, '-D', join(dir, 'data'), '-m', 'fast', '-w', '-l', join(dir, 'pg.log'), 'restart', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`]);
    const after = served;
    await eventually(async () => (served >= after + 20 ? true : undefined), 60_000);
    stop = true;
    await load;
    // The LISTEN channel is back: a kill through the admin API reaches the proxy's cache.
    await fetch(`${stack.hostUrl}/admin/v1/keys/${created.id}/kill`, { method: 'POST', headers: { authorization: `Bearer ${stack.adminToken}` } });
    const refused = await eventually(async () => {
      const e = (await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).catch((x: unknown) => x)) as { code?: string; choices?: unknown };
      // Served before the kill reached this host's cache: it has its audit row like any other.
      if (Array.isArray(e.choices)) served++;
      return e.code === 'key_killed' ? e : undefined;
    }, 5_000);
    expect(refused.code).toBe('key_killed');
    // Every served request has its audit row (rows written during the outage were retried).
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      const rows = await eventually(async () => {
        const r = await db.query('SELECT COUNT(*)::int AS n FROM audit_log WHERE key_id = $1 AND status = 200', [created.id]);
        return (r.rows[0] as { n: number }).n >= served ? (r.rows[0] as { n: number }).n : undefined;
      }, 15_000);
      expect(rows, `client-side failures: ${failures.join(' | ')}`).toBe(served);
    } finally {
      await db.end();
    }
    expect(served).toBeGreaterThanOrEqual(40);
    process.stderr.write(`postgres restart: ${served} served, ${failed} failed during the outage\n`);
  });
});
