/**
 * `node host/main.ts --data-dir D --enclave unix:/path.sock [--port 8080] [--dev]`
 * Starts the gateway. First start creates the server pepper and an admin token under the data
 * directory (0600). Prints `{"ready":true,…}` on stdout; JSON logs (pino) on stderr with
 * credentials redacted.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildHostApp, LOG_REDACT, sha256Hex } from './app.ts';
import { enclavePool, parseEnclaveAddress } from './enclave-client.ts';
import { openSqliteHostStore } from './store.ts';

const { values } = parseArgs({
  options: {
    'data-dir': { type: 'string' },
    enclave: { type: 'string' },
    port: { type: 'string', default: process.env.PORT ?? '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    dev: { type: 'boolean', default: false },
  },
});

/** Reads a secret file, creating it with 0600 permissions on first start. */
function secretFile(path: string, make: () => string): string {
  if (!existsSync(path)) writeFileSync(path, make(), { mode: 0o600, flag: 'wx' });
  return readFileSync(path, 'utf8').trim();
}

async function main(): Promise<void> {
  const dataDir = values['data-dir'];
  if (!dataDir || !values.enclave) throw new Error('usage: host/main.ts --data-dir <dir> --enclave unix:<path>|tcp:<host>:<port> [--port 8080] [--dev]');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const pepper = new Uint8Array(Buffer.from(secretFile(join(dataDir, 'pepper'), () => randomBytes(32).toString('hex')), 'hex'));
  const adminToken = secretFile(join(dataDir, 'admin-token'), () => `sgadm_${randomBytes(24).toString('base64url')}`);
  const store = openSqliteHostStore(dataDir);
  const enclave = enclavePool(parseEnclaveAddress(values.enclave));
  const app = await buildHostApp({
    store,
    enclave,
    pepper,
    adminTokenHash: sha256Hex(adminToken),
    dev: values.dev,
    logger: { level: process.env.LOG_LEVEL ?? 'info', stream: process.stderr, redact: LOG_REDACT },
  });
  const address = await app.listen({ port: Number(values.port), host: values.host });
  process.stdout.write(`${JSON.stringify({ ready: true, url: address, port: Number(new URL(address).port) })}\n`);
  const stop = async () => {
    await app.close();
    await enclave.close();
    await store.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e: Error) => {
  process.stderr.write(`host: ${e.message}\n`);
  process.exit(1);
});
