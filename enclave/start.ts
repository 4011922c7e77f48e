/**
 * Starting the enclave once its entry has chosen the NSM: boot (ephemeral key, NSM check), listen
 * on the RPC address, print `{"ready":true,…}` on stdout, stop cleanly on SIGTERM/SIGINT. A start
 * that fails prints one line on stderr and exits 1 — no stack trace, never a key or a share.
 */
import { existsSync, rmSync } from 'node:fs';
import pino from 'pino';
import type { Nsm } from '../attestation/nsm.ts';
import type { EnclaveSettings } from './config.ts';
import { Enclave } from './server.ts';
import { shareholderSocketRoute, type ShareholderEndpoint } from './shareholders.ts';
import { releaseReadBuffers } from '../protocol/read-buffers.ts';

/** Logs go to stderr and never carry keys, shares or request bodies. */
export const log = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'enclave' } }, pino.destination(2));

export async function serveEnclave(settings: EnclaveSettings, nsm: Nsm, shareholders: ShareholderEndpoint[], options: { allowLoopbackHttp?: boolean } = {}): Promise<void> {
  const socketDir = settings.shareholderSocketDir;
  const enclave = new Enclave({
    nsm,
    shareholders,
    ...(socketDir ? { shareholderRoutes: new Map(shareholders.map((sh) => [sh.id, shareholderSocketRoute(socketDir, sh.id)])) } : {}),
    allowLoopbackHttp: options.allowLoopbackHttp ?? false,
    log,
    forwarder: settings.forwarder,
  });
  await enclave.boot();
  // Large bodies' socket buffers are freed as they pass, not at V8's ~64 MB trigger.
  releaseReadBuffers();
  const address = settings.listen;
  await new Promise<void>((resolve, reject) => {
    enclave.server.once('error', reject);
    if (address.kind === 'unix') {
      if (existsSync(address.path)) rmSync(address.path);
      enclave.server.listen(address.path, resolve);
    } else enclave.server.listen(address.port, address.host, resolve);
  });
  const bound = enclave.server.address();
  const where = typeof bound === 'string' ? { socket: bound } : { port: bound?.port, host: address.kind === 'tcp' ? address.host : undefined };
  process.stdout.write(`${JSON.stringify({ ready: true, nsm: nsm.kind, ...where })}\n`);
  log.info({ nsm: nsm.kind, shareholders: shareholders.length }, 'enclave serving');
  const stop = async () => {
    await enclave.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/** Runs an entry's start; a failure is one line on stderr (and in the log) and exit status 1. */
export function runEntry(start: () => Promise<void>): void {
  start().catch((e: Error) => {
    log.error({ err: e.message }, 'enclave failed to start');
    process.stderr.write(`enclave: ${e.message}\n`);
    process.exit(1);
  });
}
