/**
 * `npm start` — the whole stack on embedded defaults: host (PORT, default 8080), dev enclave,
 * 5 shareholders (3-of-5), one data directory (SECUREGATE_DATA_DIR, default ./data).
 * `npm start -- --demo` also starts a mock OpenAI-compatible upstream with a demo connection
 * and prints an SG_ key, so a real SDK request works with no provider key at all.
 *
 * Before it touches anything it takes the data directory's lock (`stack.lock`, holding its pid):
 * a second `npm start` on a directory a running stack uses is refused with one clear line, never
 * let loose on the running stack's files and sockets. A taken port is one clear line too, naming
 * the port and how to choose another — not a stack trace, nor only a line in a log file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEV_STACK_NODE_ARGS, startStack } from './stack.ts';

/** One line on stderr and exit 1: what went wrong and what to do, no stack trace. */
function fail(message: string): never {
  process.stderr.write(`securegate: ${message}\n`);
  process.exit(1);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      demo: { type: 'boolean', default: false },
      'data-dir': { type: 'string', default: process.env.SECUREGATE_DATA_DIR ?? 'data' },
      port: { type: 'string', default: process.env.PORT ?? '8080' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
} catch (e) {
  fail(`${(e as Error).message} (see npm start -- --help)`);
}
const { values } = parsed;

if (values.help) {
  process.stdout.write(`npm start [-- --demo] [--data-dir ./data] [--port 8080]

Starts host, dev enclave and 5 shareholders on loopback with embedded storage.
  --demo       also start a mock upstream with a demo connection and print an SG_ key
  --data-dir   where everything is stored (default ./data, or $SECUREGATE_DATA_DIR)
  --port       host port (default 8080, or $PORT)
`);
  process.exit(0);
}

const DEFAULT_PORT = 8080;
const port = Number(values.port);
if (!/^\d{1,5}$/.test(values.port!) || port < 1 || port > 65535) fail(`--port must be a port number from 1 to 65535, got "${values.port}"`);
const dataDir = resolve(values['data-dir']!);
/** The directory the CLI finds by itself: `data/` of this checkout (cli/config.ts). */
const defaultDataDir = resolve(import.meta.dirname, '..', 'data');

/**
 * Takes the data directory for this process: `stack.lock` is created exclusively and holds the
 * pid. A lock whose process is gone (a stack that was killed) is taken over; a live one refuses.
 */
function lockDataDir(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lock = join(dir, 'stack.lock');
  // The lock appears whole or not at all: written under a name of our own, then hard-linked into
  // place (link fails if the lock exists), so nobody ever reads a half-written pid.
  const mine = `${lock}.${process.pid}`;
  writeFileSync(mine, `${process.pid}\n`, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        linkSync(mine, lock);
        return lock;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') fail(`cannot lock the data directory ${dir}: ${(e as Error).message}`);
      }
      const pid = Number(readFileSync(lock, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        fail(
          `the data directory ${dir} is in use by a running stack (pid ${pid}). Stop that one first (Ctrl-C in its terminal), ` +
            `or start another with its own directory and port: npm start -- --data-dir ./data2 --port ${port + 1}`,
        );
      }
      // Stale: the process that held it is gone. One start at a time may take it over (the
      // takeover file is created exclusively), so a racing start cannot remove a lock just taken.
      const takeover = `${lock}.takeover`;
      try {
        writeFileSync(takeover, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      } catch {
        // Another start is taking it over — unless that one died doing so (a takeover takes ms).
        try {
          if (Date.now() - statSync(takeover).mtimeMs > 10_000) unlinkSync(takeover);
        } catch {
          // gone already
        }
        continue;
      }
      try {
        if (readFileSync(lock, 'utf8').trim() === String(pid)) unlinkSync(lock);
      } finally {
        unlinkSync(takeover);
      }
    }
  } finally {
    unlinkSync(mine);
  }
  fail(`the data directory ${dir} is being taken by another start right now; try again in a moment`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the host could listen on the port (the host binds 127.0.0.1): checked before any process starts. */
function portFree(p: number): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolvePort) => {
    const probe = createServer();
    probe.once('error', (e: NodeJS.ErrnoException) => resolvePort(e));
    probe.listen({ port: p, host: '127.0.0.1', exclusive: true }, () => probe.close(() => resolvePort(null)));
  });
}

const lockFile = lockDataDir(dataDir);
const releaseLock = () => {
  try {
    if (readFileSync(lockFile, 'utf8').trim() === String(process.pid)) unlinkSync(lockFile);
  } catch {
    // already gone
  }
};
process.on('exit', releaseLock);

const taken = await portFree(port);
if (taken) {
  fail(
    taken.code === 'EADDRINUSE'
      ? `port ${port} is already in use (another SecureGate stack or another program). Choose another: npm start -- --port ${port === 65535 ? 8081 : port + 1}  (or PORT=${port === 65535 ? 8081 : port + 1} npm start)`
      : `cannot listen on 127.0.0.1:${port} (${taken.code ?? taken.message}). Choose another port: npm start -- --port 8081`,
  );
}

const started = Date.now();
// /metrics needs a token (host/app.ts): the dev stack keeps one beside its other secrets.
const metricsTokenFile = join(dataDir, 'metrics-token');
if (!existsSync(metricsTokenFile)) writeFileSync(metricsTokenFile, `sgmet_${randomBytes(24).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
const metricsToken = readFileSync(metricsTokenFile, 'utf8').trim();
const stack = await startStack({
  dataDir,
  hostPort: port,
  mock: values.demo,
  // One process fewer: this launcher idles once the stack runs (docs/benchmarks.md, dev stack memory).
  shareholdersInProcess: true,
  hostArgs: ['--metrics-token', metricsToken],
  // The launcher's own flags (package.json "start"): bounded young and old generations (see DEV_STACK_NODE_ARGS).
  hostNodeArgs: [...DEV_STACK_NODE_ARGS],
  enclaveNodeArgs: [...DEV_STACK_NODE_ARGS],
  onProgress: (m) => process.stderr.write(`… ${m}\n`),
}).catch((e: Error) => {
  process.stderr.write(`\nsecuregate: could not start the stack: ${e.message}\n`);
  process.exit(1);
});

const lines = [
  '',
  `SecureGate is running (${((Date.now() - started) / 1000).toFixed(1)} s)`,
  `  gateway      ${stack.hostUrl}/v1   (OpenAI/Anthropic-compatible)`,
  `  enclave      unix:${stack.enclaveSocket}   (dev NSM, PCR0 ${stack.pcr0.slice(0, 16)}…)`,
  `  shareholders ${stack.shareholders.map((s) => s.url).join(' ')}`,
  `  data         ${dataDir}   (logs in ${dataDir}/logs)`,
  `  metrics      curl -H "Authorization: Bearer $(cat ${join(dataDir, 'metrics-token')})" ${stack.hostUrl}/metrics`,
  '',
];
// Off the defaults, the CLI in another terminal cannot find this stack by itself: say what to export.
const exports = [
  ...(port !== DEFAULT_PORT ? [`  export SECUREGATE_URL=${stack.hostUrl}`] : []),
  ...(dataDir !== defaultDataDir ? [`  export SECUREGATE_DATA_DIR=${dataDir}`] : []),
];
if (exports.length) lines.push('This stack is not on the defaults; for the CLI (npx securegate) in another terminal:', ...exports, '');
if (stack.demo) {
  lines.push(
    'Demo connection to the mock upstream:',
    `  export OPENAI_BASE_URL=${stack.hostUrl}/v1`,
    `  export OPENAI_API_KEY=${stack.demo.key}`,
    `  curl $OPENAI_BASE_URL/chat/completions -H "Authorization: Bearer $OPENAI_API_KEY" \\`,
    `       -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'`,
    '',
  );
} else {
  lines.push(
    'Next (this CLI is logged in to the local stack automatically):',
    '  npx securegate connect openai            # paste your key at the hidden prompt; it is split on this machine',
    '  npx securegate keys create --connection <id>',
    `  then point any OpenAI SDK at ${stack.hostUrl}/v1 with the SG_ key.`,
    '  (no provider key? `npm start -- --demo` adds a mock upstream and a ready SG_ key)',
    '',
  );
}
// The dashboard needs a user: while the stack's own account has none, offer a one-time owner invite.
const members = (await (await fetch(`${stack.hostUrl}/admin/v1/members`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json()) as unknown[];
if (Array.isArray(members) && members.length === 0) {
  const invite = (await (await fetch(`${stack.hostUrl}/admin/v1/invites`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ role: 'owner' }),
  })).json()) as { invite?: string };
  if (invite.invite) lines.push(`Dashboard: ${stack.hostUrl}/dashboard/ — sign up with the one-time owner invite ${invite.invite}`, '');
} else {
  lines.push(`Dashboard: ${stack.hostUrl}/dashboard/`, '');
}
lines.push('Ctrl-C stops everything.');
process.stdout.write(`${lines.join('\n')}\n`);

const shutdown = async () => {
  process.stderr.write('\nstopping…\n');
  await stack.stop();
  releaseLock();
  process.exit(0);
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
