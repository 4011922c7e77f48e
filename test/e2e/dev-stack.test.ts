/**
 * `npm start` (scripts/dev-stack.ts) and the `securegate` bin in their users' first minutes
 * (issue 20): a second start on a data directory a running stack uses is refused before it touches
 * anything; a taken port is one clear line naming the port and how to choose another; off the
 * defaults the banner prints the exports the CLI needs; `npx securegate` prints no npm engine
 * warnings, and on a Node too old the bin says so in one line.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './helpers.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const devStack = join(root, 'scripts', 'dev-stack.ts');
/** A stack trace's frames, which none of these messages may show. */
const STACK_FRAME = /\n\s+at .+:\d+:\d+/;

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [devStack, ...args], { cwd: root, env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

describe('npm start on a data directory and a port', () => {
  let dataDir: string;
  let port: number;
  let first: ChildProcess;
  let banner = '';

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sg-devstack-'));
    port = await freePort();
    first = spawn(process.execPath, [devStack, '--data-dir', dataDir, '--port', String(port)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let stderr = '';
      first.stdout!.on('data', (d: Buffer) => {
        banner += d.toString();
        if (banner.includes('Ctrl-C stops everything.')) resolve();
      });
      first.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      first.once('exit', (code) => reject(new Error(`the first stack exited (${code}): ${stderr}`)));
    });
  }, 90_000);

  afterAll(async () => {
    if (first && first.exitCode === null && first.signalCode === null) {
      const exited = new Promise((r) => first.once('exit', r));
      first.kill('SIGINT');
      await exited;
    }
    await rm(dataDir, { recursive: true, force: true });
  });

  it('prints the exports the CLI needs when the port and data directory are not the defaults', () => {
    expect(banner).toContain(`  export SECUREGATE_URL=http://127.0.0.1:${port}\n`);
    expect(banner).toContain(`  export SECUREGATE_DATA_DIR=${dataDir}\n`);
  });

  it('refuses a second start on the same data directory in one line, leaving the running stack untouched', async () => {
    const files = ['dev-stack.json', 'metrics-token', 'stack.lock'].map((f) => join(dataDir, f));
    const before = files.map((f) => [readFileSync(f, 'utf8'), statSync(f).mtimeMs]);
    const socket = JSON.parse(readFileSync(join(dataDir, 'dev-stack.json'), 'utf8')) as { hostUrl: string };
    const second = await run(['--data-dir', dataDir, '--port', String(await freePort())]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`^securegate: the data directory ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by a running stack \\(pid ${first.pid}\\)`));
    expect(second.stderr).toContain('--data-dir');
    expect(second.stderr.trim().split('\n')).toHaveLength(1);
    expect(second.stderr).not.toMatch(STACK_FRAME);
    expect(second.stdout).toBe('');
    expect(files.map((f) => [readFileSync(f, 'utf8'), statSync(f).mtimeMs])).toEqual(before);
    // The running stack still serves.
    expect((await fetch(`${socket.hostUrl}/healthz`)).status).toBeLessThan(500);
    expect(first.exitCode).toBeNull();
  });

  it('reports a taken port in one line with the --port hint, and leaves no lock behind', async () => {
    const other = await mkdtemp(join(tmpdir(), 'sg-devstack-port-'));
    try {
      const r = await run(['--data-dir', other, '--port', String(port)]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(
        `securegate: port ${port} is already in use (another SecureGate stack or another program). Choose another: npm start -- --port ${port + 1}  (or PORT=${port + 1} npm start)`,
      );
      expect(existsSync(join(other, 'stack.lock'))).toBe(false);
      expect(existsSync(join(other, 'dev-stack.json'))).toBe(false);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('takes over the lock of a stack that is gone (its process no longer runs)', async () => {
    const other = await mkdtemp(join(tmpdir(), 'sg-devstack-stale-'));
    const blocker: Server = createServer();
    try {
      const dead = spawn(process.execPath, ['-e', '0']);
      await new Promise((r) => dead.once('exit', r));
      await writeFile(join(other, 'stack.lock'), `${dead.pid}\n`);
      // A taken port stops it right after the lock, so no stack starts: the refusal is about the port, not the lock.
      const blocked = await freePort();
      await new Promise<void>((r) => blocker.listen(blocked, '127.0.0.1', r));
      const r = await run(['--data-dir', other, '--port', String(blocked)]);
      expect(r.stderr).toContain(`port ${blocked} is already in use`);
      expect(r.stderr).not.toContain('in use by a running stack');
    } finally {
      blocker.close();
      await rm(other, { recursive: true, force: true });
    }
  });

  it('refuses a port that is not a number in one line', async () => {
    const r = await run(['--data-dir', dataDir, '--port', 'eighty']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('securegate: --port must be a port number from 1 to 65535, got "eighty"');
  });

  // Last: it kills the stack the others use.
  it('takes its host and enclave down with it when the launcher dies without stopping them', async () => {
    const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(first.pid)], { encoding: 'utf8' }).split('\n').map((p) => p.trim()).filter(Boolean).map(Number);
    const scripts = children.map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    expect(scripts.some((c) => c.includes('host/main.ts'))).toBe(true);
    expect(scripts.some((c) => c.includes('enclave/dev-main.ts'))).toBe(true);
    first.kill('SIGKILL');
    // Gone, or a zombie nobody has reaped yet (it stopped running either way).
    const running = (pid: number) => existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    const deadline = Date.now() + 20_000;
    while (children.some(running) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(children.filter(running)).toEqual([]);
  }, 30_000);
});

describe('the securegate bin in its first minute', () => {
  const systemNode = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => existsSync(p));
  const systemNpx = ['/usr/bin/npx', '/usr/local/bin/npx'].find((p) => existsSync(p));

  it.skipIf(!systemNpx)('npx securegate prints no npm engine warnings, whatever Node npm itself runs on', async () => {
    // npx as a user runs it from the checkout: the system's npm, with the project's bin directory first on PATH.
    const path = `${join(root, 'node_modules', '.bin')}:${(process.env.PATH ?? '').split(':').filter((d) => !d.includes('node_modules')).join(':')}`;
    const r = await new Promise<{ stdout: string; stderr: string }>((resolve) =>
      execFile(systemNpx!, ['--no-install', 'securegate', '--help'], { cwd: root, env: { ...process.env, PATH: path }, timeout: 60_000 }, (_e, stdout, stderr) => resolve({ stdout, stderr })),
    );
    expect(r.stdout).toContain('Usage: securegate');
    expect(r.stderr).not.toContain('EBADENGINE');
    expect(r.stderr).not.toMatch(/npm warn/i);
  });

  it.skipIf(!systemNode)('on a Node older than 24 says so in one line, with what to run instead', async () => {
    const version = await new Promise<string>((resolve) => execFile(systemNode!, ['--version'], (_e, out) => resolve(out.trim())));
    if (Number(version.slice(1).split('.')[0]) >= 24) return; // this machine's system Node is new enough: nothing to show
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile(systemNode!, [join(root, 'bin', 'securegate.mjs'), 'keys', 'list'], { cwd: root }, (e, _out, stderr) => resolve({ code: e ? ((e as { code?: number }).code ?? null) : 0, stderr })),
    );
    expect(r.code).toBe(3);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`securegate needs Node.js 24 or newer (this is ${version})`);
    expect(r.stderr).toContain('npx securegate');
  });
});
