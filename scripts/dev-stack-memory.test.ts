/**
 * What keeps `npm start` small (issue 22, docs/benchmarks.md "Dev stack memory"): the launcher
 * does not hold the dev root's X.509 code once a root exists, no process loads `pg` on SQLite nor
 * the host `nodemailer` without SMTP, and launcher, host and enclave run with bounded young and
 * old generations (DEV_STACK_NODE_ARGS).
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort } from '../test/e2e/helpers.ts';
import { benchStackOptions } from '../bench/gateway.ts';
import { DEV_STACK_NODE_ARGS, startStack } from './stack.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Every module URL that importing `module` loads, in a fresh process. */
function modulesLoadedBy(module: string): Promise<string[]> {
  const script = `
    import { registerHooks } from 'node:module';
    const loaded = [];
    registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context); } });
    await import(${JSON.stringify(pathToFileURL(join(root, module)).href)});
    process.stdout.write(JSON.stringify(loaded));`;
  return new Promise((resolve, reject) =>
    execFile(process.execPath, ['--input-type=module', '--eval', script], { cwd: root }, (error, stdout) => (error ? reject(error) : resolve(JSON.parse(stdout) as string[]))),
  );
}

describe('npm start memory', () => {
  it('loads the dev root X.509 code only when it creates a root, not with the stack launcher', async () => {
    const loaded = await modulesLoadedBy('scripts/stack.ts');
    expect(loaded.some((u) => u.endsWith('/scripts/stack.ts'))).toBe(true);
    expect(loaded.filter((u) => u.endsWith('/attestation/dev.ts') || u.includes('/@peculiar/x509/') || u.includes('/tsyringe/'))).toEqual([]);
  });

  it('runs npm start\'s launcher with the Node flags it gives the host and the enclave', async () => {
    const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe(`node ${DEV_STACK_NODE_ARGS.join(' ')} scripts/dev-stack.ts`);
    expect(DEV_STACK_NODE_ARGS).toEqual(expect.arrayContaining(['--max-semi-space-size=16', '--heap-growing-percent=20']));
  });

  it('starts host and enclave with its Node flags, and no process loads pg on SQLite nor the host nodemailer without SMTP', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sg-devstack-mem-'));
    // Every process of the stack records each module it loads, by pid (NODE_OPTIONS reaches them all).
    const traced = join(dataDir, 'modules');
    const hook = join(dataDir, 'trace-modules.mjs');
    await writeFile(
      hook,
      `import { registerHooks } from 'node:module';
       import { appendFileSync } from 'node:fs';
       registerHooks({ load(url, context, next) { appendFileSync(${JSON.stringify(traced)} + '.' + process.pid, url + '\\n'); return next(url, context); } });`,
    );
    const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(hook).href}` };
    const launcher = spawn(process.execPath, [...DEV_STACK_NODE_ARGS, join(root, 'scripts/dev-stack.ts'), '--data-dir', join(dataDir, 'stack'), '--port', String(await freePort())], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        launcher.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('Ctrl-C stops everything.')) resolve();
        });
        launcher.once('exit', (code) => reject(new Error(`npm start exited (${code})`)));
      });
      const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(launcher.pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map((p) => p.trim());
      const argvOf = (pid: string) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const host = children.find((pid) => argvOf(pid).some((s) => s.endsWith('host/main.ts')))!;
      const enclave = children.find((pid) => argvOf(pid).some((s) => s.endsWith('enclave/dev-main.ts')))!;
      for (const pid of [host, enclave]) expect(argvOf(pid)).toEqual(expect.arrayContaining([...DEV_STACK_NODE_ARGS]));
      const modulesOf = (pid: string | number) => readFileSync(`${traced}.${pid}`, 'utf8').split('\n');
      const hostModules = modulesOf(host);
      expect(hostModules.some((u) => u.endsWith('/host/alerts.ts'))).toBe(true);
      expect(hostModules.some((u) => u.endsWith('/storage/db.ts'))).toBe(true);
      expect(hostModules.filter((u) => u.includes('/node_modules/pg/') || u.includes('/node_modules/nodemailer/'))).toEqual([]);
      // The launcher serves the five shareholders, each on its own SQLite store.
      const launcherModules = modulesOf(launcher.pid!);
      expect(launcherModules.some((u) => u.endsWith('/shareholders/store.ts'))).toBe(true);
      expect(launcherModules.filter((u) => u.includes('/node_modules/pg/'))).toEqual([]);
    } finally {
      const exited = new Promise((r) => launcher.once('exit', r));
      launcher.kill('SIGINT');
      await exited;
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 90_000);

  it('runs every SecureGate process of the benchmark\'s stack with npm start\'s Node flags', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sg-bench-flags-'));
    const stack = await startStack(benchStackOptions(dataDir));
    try {
      const processes = { host: stack.host, enclave: stack.enclave, shareholders: stack.shareholderProcess()! };
      for (const [name, p] of Object.entries(processes)) expect(p.child.spawnargs, name).toEqual(expect.arrayContaining([...DEV_STACK_NODE_ARGS]));
    } finally {
      await stack.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 90_000);
});
