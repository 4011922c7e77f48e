/**
 * The host gateway's process: `node host/main.ts [serve|migrate] …` (options in USAGE below).
 * First start creates the server pepper and an admin token under the data directory (0600).
 * `serve` prints `{"ready":true,…}` on stdout; JSON logs (pino) on stderr with credentials redacted.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { buildHostApp, LOG_REDACT, metricsAddress, sha256Hex } from './app.ts';
import { openPostgres, openSqlite } from '../storage/db.ts';
import { releaseReadBuffers } from '../protocol/read-buffers.ts';
import { enclavePool, parseEnclaveAddress } from './enclave-client.ts';
import { openGeoDatabase } from './geo.ts';
import { HostStore } from './store.ts';
import { AccountStore } from './accounts.ts';
import { PlanBook } from './plans.ts';
import { awsNitroRoot, loadRoot } from '../attestation/index.ts';
import type { EnrollmentConfig } from './dashboard.ts';
import { fileURLToPath } from 'node:url';

const USAGE = `usage: node host/main.ts [serve|migrate] --data-dir D --enclave unix:/path.sock|tcp:host:port [options]
  --database <postgres://…>   PostgreSQL (shared by any number of host instances); default:
                              embedded SQLite at <data-dir>/host.sqlite
  --db-schema <name>          PostgreSQL schema (default: public)
  --port 8080 --host 127.0.0.1 --dev
  --trusted-proxy <entry>     repeatable; each trusted proxy with the one header it sets:
                              alb[@cidr,…] | nginx[@cidr,…] | xff@cidr,…  (X-Forwarded-For),
                              cloudflare (CF-Connecting-IP from Cloudflare's ranges),
                              forwarded@cidr,… (RFC 7239), header=<name>@cidr,… (e.g. x-real-ip),
                              loopback | private (X-Forwarded-For from those ranges), <cidr> (= xff@<cidr>)
  --allow-unknown-location    city-locked keys accept addresses with no known location
  --geo-db <file.mmdb>        MaxMind-format city database (default: bundled GeoLite2-City)
  --smtp-url smtp://…         SMTP server for alert email (or SECUREGATE_SMTP_URL); --alert-email-from
  --headers-timeout 300 --idle-timeout 300   seconds until upstream headers / between body chunks
  --release-manifest <file>   the signed release manifest served with GET /v1/attestation
  --audit-retention-days 90   audit rows and events older than this are deleted
  --plans <plans.json>        the operator's plans (docs/accounts.md); default Free/Pro/Enterprise
  --signup invite|open        self-service sign-up: by invite (default) or open to anyone
  --enrollment <file>         shareholders the dashboard enrolls to: {threshold, shareholders:[{id,url,publicKey}], pcrPolicy}
  --attestation-root <pem>    extra root for the dashboard's attestation check (dev stacks); AWS's is always pinned
  --dashboard-dir <dir>       the built dashboard (default: dashboard/dist beside host/)
  --unknown-model refuse       accepted for old configurations; a capped key never spends on a model
                              it cannot price (\`count\` has no effect and says so at start)
  --allow-private-webhooks    alert webhooks may reach loopback/private/link-local addresses (implied by --dev)
  --metrics-token <token>     Bearer token for GET /metrics (or SECUREGATE_METRICS_TOKEN); without it
                              and without --metrics-port, /metrics is refused
  --metrics-port <n> --metrics-host 127.0.0.1   a separate listener serving only /metrics
  --body-timeout 30 --body-min-rate 512   a request body must advance by at least min-rate bytes/s
                              over every window of body-timeout seconds, or the client gets 408
  --client-headers-timeout 30 --request-timeout 3600   seconds for a client's headers / whole request
  --shutdown-grace 10         on SIGTERM/SIGINT: stop accepting, let in-flight requests finish for
                              this many seconds, then close everything; exit at most 5 s later
`;

const OPTIONS = {
    'data-dir': { type: 'string' },
    enclave: { type: 'string' },
    database: { type: 'string', default: process.env.SECUREGATE_DATABASE_URL },
    'db-schema': { type: 'string' },
    port: { type: 'string', default: process.env.PORT ?? '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    dev: { type: 'boolean', default: false },
    'trusted-proxy': { type: 'string', multiple: true, default: [] },
    'allow-unknown-location': { type: 'boolean', default: false },
    'geo-db': { type: 'string' },
    'velocity-floor': { type: 'string' },
    'velocity-factor': { type: 'string' },
    'unknown-model': { type: 'string', default: 'refuse' },
    'smtp-url': { type: 'string', default: process.env.SECUREGATE_SMTP_URL },
    'alert-email-from': { type: 'string' },
    'audit-retention-days': { type: 'string', default: '90' },
    'headers-timeout': { type: 'string', default: '300' },
    'release-manifest': { type: 'string' },
    'idle-timeout': { type: 'string', default: '300' },
    plans: { type: 'string' },
    signup: { type: 'string', default: 'invite' },
    enrollment: { type: 'string' },
    'attestation-root': { type: 'string', multiple: true, default: [] },
    'dashboard-dir': { type: 'string', default: fileURLToPath(new URL('../dashboard/dist', import.meta.url)) },
    'allow-private-webhooks': { type: 'boolean', default: false },
    'metrics-token': { type: 'string', default: process.env.SECUREGATE_METRICS_TOKEN },
    'metrics-host': { type: 'string', default: '127.0.0.1' },
    'metrics-port': { type: 'string' },
    'body-timeout': { type: 'string', default: '30' },
    'body-min-rate': { type: 'string', default: '512' },
    'client-headers-timeout': { type: 'string', default: '30' },
    'request-timeout': { type: 'string', default: '3600' },
    'shutdown-grace': { type: 'string', default: '10' },
    help: { type: 'boolean', short: 'h', default: false },
} satisfies ParseArgsOptionsConfig;

/** Options as given; a wrong one prints the usage and exits 2 (no stack trace). */
function parseOptions() {
  try {
    return parseArgs({ allowPositionals: true, options: OPTIONS });
  } catch (e) {
    process.stderr.write(`host: ${(e as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
}
const { values, positionals } = parseOptions();
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

/** A number option: finite and at least `min`, or the start fails naming the flag. */
function numberOption(name: keyof typeof values, min: number): number {
  const n = Number(values[name]);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${String(values[name])}`);
  return n;
}

/** Reads a secret file, creating it with 0600 permissions on first start. */
function secretFile(path: string, make: () => string): string {
  if (!existsSync(path)) writeFileSync(path, make(), { mode: 0o600, flag: 'wx' });
  return readFileSync(path, 'utf8').trim();
}

function openStore(dataDir: string): HostStore {
  const db = values.database
    ? openPostgres({ connectionString: values.database, ...(values['db-schema'] ? { schema: values['db-schema'] } : {}) })
    : openSqlite(join(dataDir, 'host.sqlite'));
  return new HostStore(db);
}

async function main(): Promise<void> {
  const command = positionals[0] ?? 'serve';
  const dataDir = values['data-dir'];
  if (!dataDir) throw new Error('usage: host/main.ts [serve|migrate] --data-dir <dir> --enclave unix:<path>|tcp:<host>:<port> [--database postgres://…]');
  // Options are checked before anything is opened, so a typo fails at once.
  if (values['unknown-model'] === 'count') {
    process.stderr.write('host: --unknown-model count has no effect any more: a capped key never forwards a request it cannot price (403 price_unknown)\n');
  }
  const metricsToken = values['metrics-token'] || undefined;
  if (metricsToken !== undefined && metricsToken.length < 16) throw new Error('--metrics-token must be at least 16 characters');
  const metricsPort = values['metrics-port'] === undefined ? undefined : numberOption('metrics-port', 0);
  const graceMs = numberOption('shutdown-grace', 0) * 1000;
  const bodyTimeout = { windowMs: numberOption('body-timeout', 0.01) * 1000, minBytesPerSecond: numberOption('body-min-rate', 0) };
  const clientTimeouts = { headersMs: numberOption('client-headers-timeout', 0.1) * 1000, requestMs: numberOption('request-timeout', 1) * 1000 };
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const store = openStore(dataDir);
  const applied = await store.migrate();
  if (command === 'migrate') {
    process.stdout.write(`${JSON.stringify({ engine: store.db.engine, applied })}\n`);
    await store.close();
    return;
  }
  if (!values.enclave) throw new Error('--enclave unix:<path>|tcp:<host>:<port> is required');
  const pepper = new Uint8Array(Buffer.from(secretFile(join(dataDir, 'pepper'), () => randomBytes(32).toString('hex')), 'hex'));
  const adminToken = secretFile(join(dataDir, 'admin-token'), () => `sgadm_${randomBytes(24).toString('base64url')}`);
  if (values.signup !== 'invite' && values.signup !== 'open') throw new Error('--signup must be invite or open');
  const plans = values.plans ? PlanBook.fromFile(values.plans) : new PlanBook();
  for (const a of await new AccountStore(store).list()) {
    if (!plans.has(a.plan)) throw new Error(`account ${a.id} is on plan "${a.plan}", which the plans configuration does not define; add it or move the account first`);
  }
  const enclave = enclavePool(parseEnclaveAddress(values.enclave));
  const app = await buildHostApp({
    store,
    enclave,
    pepper,
    adminTokenHash: sha256Hex(adminToken),
    dev: values.dev,
    trustedProxies: values['trusted-proxy'],
    geo: openGeoDatabase(values['geo-db'] ? { file: values['geo-db'] } : undefined),
    allowUnknownLocation: values['allow-unknown-location'],
    velocity: {
      ...(values['velocity-floor'] ? { floorPerMinute: Number(values['velocity-floor']) } : {}),
      ...(values['velocity-factor'] ? { spikeFactor: Number(values['velocity-factor']) } : {}),
    },
    auditRetentionDays: Number(values['audit-retention-days']),
    ...(values['release-manifest'] ? { releaseManifest: JSON.parse(readFileSync(values['release-manifest'], 'utf8')) as unknown } : {}),
    timeouts: { headersMs: Number(values['headers-timeout']) * 1000, idleMs: Number(values['idle-timeout']) * 1000 },
    ...(values['smtp-url'] ? { smtpUrl: values['smtp-url'] } : {}),
    ...(values['alert-email-from'] ? { emailFrom: values['alert-email-from'] } : {}),
    plans,
    signup: values.signup,
    attestationRoots: [awsNitroRoot(), ...values['attestation-root'].map((f) => loadRoot(basename(f), readFileSync(f)))],
    ...(values.enrollment ? { enrollment: JSON.parse(readFileSync(values.enrollment, 'utf8')) as EnrollmentConfig } : {}),
    dashboardDir: values['dashboard-dir'],
    allowPrivateWebhooks: values['allow-private-webhooks'] || values.dev,
    ...(metricsToken ? { metricsToken } : {}),
    ...(metricsPort !== undefined ? { metricsListen: { host: values['metrics-host'], port: metricsPort } } : {}),
    bodyTimeout,
    clientTimeouts,
    logger: { level: process.env.LOG_LEVEL ?? 'info', stream: process.stderr, redact: LOG_REDACT },
  });
  const address = await app.listen({ port: Number(values.port), host: values.host });
  // Large bodies' socket buffers are freed as they pass, not at V8's ~64 MB trigger.
  releaseReadBuffers();
  const metrics = metricsAddress(app);
  process.stdout.write(`${JSON.stringify({ ready: true, url: address, port: Number(new URL(address).port), engine: store.db.engine, ...(metrics ? { metricsPort: metrics.port } : {}) })}\n`);

  // Graceful stop within a bounded time: stop accepting at once, give in-flight requests the grace
  // period, then cut the remaining connections and enclave calls; whatever still hangs (a database
  // that does not answer, an audit flush) gets 5 s more before the process exits anyway.
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      app.log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    app.log.info({ signal, graceMs }, 'shutting down: no new connections, in-flight requests may finish');
    // A keep-alive connection whose request has finished would otherwise hold the close until the cutoff.
    const idle = setInterval(() => app.server.closeIdleConnections(), 100);
    const cutoff = setTimeout(() => {
      app.log.warn('shutdown grace period over: closing the remaining connections');
      app.server.closeAllConnections();
      enclave.destroy().catch(() => undefined);
    }, graceMs);
    const deadline = setTimeout(() => {
      app.log.error('shutdown did not complete in time (database or enclave not answering): exiting');
      process.exit(1);
    }, graceMs + 5_000);
    (async () => {
      await app.close();
      await enclave.close().catch(() => undefined);
      await store.close();
    })().then(
      () => {
        clearInterval(idle);
        clearTimeout(cutoff);
        clearTimeout(deadline);
        process.exit(0);
      },
      (e: Error) => {
        app.log.error({ err: e.message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Started over an IPC channel (npm start, the tests, the benchmark): stop as on SIGTERM when the
  // launcher goes, even if it died without stopping us, rather than run on as an orphan.
  if (process.channel) process.once('disconnect', () => stop('SIGTERM'));
}

main().catch((e: Error) => {
  process.stderr.write(`host: ${e.message}\n`);
  process.exit(1);
});
