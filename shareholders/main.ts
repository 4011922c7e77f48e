/**
 * `node shareholders/main.ts <init|serve|audit>` — the shareholder operator's entry point.
 *   init  --data-dir D --id ID          create the identity (X25519, 0600)
 *   serve --data-dir D [--port N] [--host H] [--dev --dev-root PEM] [--database postgres://…]
 *         (the operator's own PostgreSQL; default: SQLite under the data directory)
 *   audit --data-dir D [--json]          print and verify the hash-chained audit log
 * `serve` prints one JSON line `{"ready":true,…}` on stdout once listening; logs go to stderr.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadRoot } from '../attestation/index.ts';
import { toHex } from '../protocol/index.ts';
import { verifyAuditChain } from './audit.ts';
import { initIdentity, loadIdentity } from './identity.ts';
import { buildShareholderServer } from './server.ts';
import { openShareStore } from './store.ts';

const USAGE = `usage:
  shareholders/main.ts init  --data-dir <dir> --id <shareholder-id>
  shareholders/main.ts serve --data-dir <dir> [--port 0] [--host 127.0.0.1] [--dev --dev-root <pem>] [--database postgres://… [--db-schema s]]
  shareholders/main.ts audit --data-dir <dir> [--json]`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      'data-dir': { type: 'string' },
      id: { type: 'string' },
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      dev: { type: 'boolean', default: false },
      'dev-root': { type: 'string' },
      json: { type: 'boolean', default: false },
      database: { type: 'string', default: process.env.SHAREHOLDER_DATABASE_URL },
      'db-schema': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const dataDir = values['data-dir'];
  if (values.help || !command || !dataDir) {
    process.stderr.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  if (command === 'init') {
    if (!values.id) {
      process.stderr.write(`--id is required\n${USAGE}\n`);
      return 2;
    }
    const identity = initIdentity(dataDir, values.id);
    process.stdout.write(`${JSON.stringify({ id: identity.id, publicKey: toHex(identity.publicKey) })}\n`);
    return 0;
  }
  if (command === 'audit') {
    const store = await openShareStore(dataDir, values.database, values['db-schema']);
    const entries = await store.readAudit(0, 1_000_000);
    await store.close();
    const broken = verifyAuditChain(entries);
    if (values.json) process.stdout.write(`${JSON.stringify({ intact: broken === undefined, brokenAt: broken ?? null, entries })}\n`);
    else {
      for (const e of entries) process.stdout.write(`${e.seq}\t${e.at}\t${e.event.action}\t${e.event.outcome}\t${e.event.connectionId ?? ''}\t${e.event.code ?? ''}\n`);
      process.stdout.write(broken === undefined ? `chain intact (${entries.length} entries)\n` : `CHAIN BROKEN at entry ${broken}\n`);
    }
    return broken === undefined ? 0 : 1;
  }
  if (command === 'serve') {
    const identity = loadIdentity(dataDir);
    const store = await openShareStore(dataDir, values.database, values['db-schema']);
    const extraRoots = values.dev && values['dev-root'] ? [loadRoot('securegate-dev-root', readFileSync(values['dev-root']))] : [];
    const app = await buildShareholderServer({
      identity,
      store,
      mode: values.dev ? 'dev' : 'production',
      extraRoots,
      logger: { level: process.env.LOG_LEVEL ?? 'info', stream: process.stderr },
    });
    const address = await app.listen({ port: Number(values.port), host: values.host });
    const port = Number(new URL(address).port);
    process.stdout.write(`${JSON.stringify({ ready: true, id: identity.id, port, url: `http://${values.host}:${port}`, publicKey: toHex(identity.publicKey) })}\n`);
    const stop = async () => {
      await app.close();
      await store.close();
      process.exit(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    return -1;
  }
  process.stderr.write(`unknown command ${command}\n${USAGE}\n`);
  return 2;
}

const code = await main(process.argv.slice(2)).catch((e: Error) => {
  process.stderr.write(`shareholder: ${e.message}\n`);
  return 1;
});
if (code >= 0) process.exit(code);
