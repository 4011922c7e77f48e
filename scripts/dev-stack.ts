/**
 * `npm start` — the whole stack on embedded defaults: host (PORT, default 8080), dev enclave,
 * 5 shareholders (3-of-5), one data directory (SECUREGATE_DATA_DIR, default ./data).
 * `npm start -- --demo` also starts a mock OpenAI-compatible upstream with a demo connection
 * and prints an SG_ key, so a real SDK request works with no provider key at all.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startStack } from './stack.ts';

const { values } = parseArgs({
  options: {
    demo: { type: 'boolean', default: false },
    'data-dir': { type: 'string', default: process.env.SECUREGATE_DATA_DIR ?? 'data' },
    port: { type: 'string', default: process.env.PORT ?? '8080' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write(`npm start [-- --demo] [--data-dir ./data] [--port 8080]

Starts host, dev enclave and 5 shareholders on loopback with embedded storage.
  --demo       also start a mock upstream with a demo connection and print an SG_ key
  --data-dir   where everything is stored (default ./data, or $SECUREGATE_DATA_DIR)
  --port       host port (default 8080, or $PORT)
`);
  process.exit(0);
}

const started = Date.now();
// /metrics needs a token (host/app.ts): the dev stack keeps one beside its other secrets.
mkdirSync(values['data-dir']!, { recursive: true, mode: 0o700 });
const metricsTokenFile = join(values['data-dir']!, 'metrics-token');
if (!existsSync(metricsTokenFile)) writeFileSync(metricsTokenFile, `sgmet_${randomBytes(24).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
const metricsToken = readFileSync(metricsTokenFile, 'utf8').trim();
const stack = await startStack({
  dataDir: values['data-dir']!,
  hostPort: Number(values.port),
  mock: values.demo,
  // One process fewer: this launcher idles once the stack runs (docs/benchmarks.md, dev stack memory).
  shareholdersInProcess: true,
  hostArgs: ['--metrics-token', metricsToken],
  onProgress: (m) => process.stderr.write(`… ${m}\n`),
}).catch((e: Error) => {
  process.stderr.write(`\nsecuregate: could not start the stack: ${e.message}\n`);
  process.exit(1);
});

const dataDir = resolve(values['data-dir']!);
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
  process.exit(0);
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
