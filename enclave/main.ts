/**
 * `node enclave/main.ts --listen unix:/run/sg/enclave.sock --shareholders shareholders.json [--dev-nsm <root-dir> --dev-pcr0 <hex>]`
 *   shareholders.json: [{ "id", "url", "publicKey" (X25519 identity key, hex), "vsockPort"? }, …]
 *   --shareholder-socket-dir <dir>  reach shareholder <id> through <dir>/shareholder-<id>.sock (production)
 *   --print-shareholder-bridges     print "<id> <vsockPort>" per shareholder and exit (for enclave-init.sh)
 *   --egress <origin>=unix:<path>|tcp:<host>:<port>  (repeatable) how each upstream is reached
 *   --egress-only                 refuse origins without an egress route (production)
 *   --ca-file <pem>               CA bundle for upstream and https-shareholder TLS (default: Node's Mozilla roots)
 *   --connect-timeout 10 --headers-timeout 120 --idle-timeout 300   seconds
 * Boots the enclave: picks the NSM (/dev/nsm when present, the dev NSM only when asked), makes
 * the ephemeral key, listens on the RPC transport and prints `{"ready":true,…}` on stdout.
 * Logs go to stderr and never carry keys, shares or request bodies.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { NitroNsm, nitroDevicePresent, type Nsm } from '../attestation/index.ts';
import { fromHex } from '../protocol/index.ts';
import { parseEgress } from './forward.ts';
import { parseShareholderEndpoints, shareholderBridges, shareholderSocketRoute, type ShareholderEndpoint } from './key-resolver.ts';
import { Enclave } from './server.ts';
import { parseListenAddress } from './transport.ts';

const { values } = parseArgs({
  options: {
    listen: { type: 'string', default: 'tcp:127.0.0.1:0' },
    shareholders: { type: 'string' },
    'dev-nsm': { type: 'string' },
    'dev-pcr0': { type: 'string' },
    'allow-loopback-http': { type: 'boolean', default: false },
    egress: { type: 'string', multiple: true, default: [] },
    'egress-only': { type: 'boolean', default: false },
    'ca-file': { type: 'string' },
    'shareholder-socket-dir': { type: 'string' },
    'print-shareholder-bridges': { type: 'boolean', default: false },
    'connect-timeout': { type: 'string', default: '10' },
    'headers-timeout': { type: 'string', default: '120' },
    'idle-timeout': { type: 'string', default: '300' },
  },
});

const log = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'enclave' } }, pino.destination(2));

/**
 * The shareholders this enclave asks, with each one's identity key (releases must authenticate
 * as it). In production the file is part of the image, so the PCRs cover it. A development stack
 * may list only ids and URLs: then — and only with the dev NSM — each key is read once from the
 * shareholder's /v1/identity at boot (trust on first use, logged loudly).
 */
async function loadShareholders(path: string, dev: boolean): Promise<ShareholderEndpoint[]> {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as unknown;
  if (dev && Array.isArray(raw) && raw.some((e) => typeof (e as { publicKey?: unknown })?.publicKey !== 'string')) {
    const filled = await Promise.all(
      raw.map(async (e: { id?: string; url?: string; publicKey?: string }) => {
        if (typeof e?.publicKey === 'string') return e;
        try {
          const res = await fetch(`${String(e?.url)}/v1/identity`, { signal: AbortSignal.timeout(10_000) });
          const identity = (await res.json()) as { id?: string; publicKey?: string };
          if (identity.id !== e?.id) throw new Error(`it says it is ${String(identity.id)}`);
          log.warn({ shareholder: e.id, publicKey: identity.publicKey }, 'DEVELOPMENT: shareholder identity key taken from the network at boot (trust on first use); list publicKey in the shareholder file');
          return { ...e, publicKey: identity.publicKey };
        } catch (error) {
          // Without its key no release from it could be authenticated: leave it out until a restart.
          log.warn({ shareholder: e?.id, reason: (error as Error).message }, 'DEVELOPMENT: shareholder identity unavailable at boot; not asking this shareholder');
          return undefined;
        }
      }),
    );
    return parseShareholderEndpoints(filled.filter((e) => e !== undefined));
  }
  return parseShareholderEndpoints(raw);
}

async function main(): Promise<void> {
  if (!values.shareholders) throw new Error('--shareholders <file.json> is required ([{ "id", "url", "publicKey" }, …])');
  if (values['print-shareholder-bridges']) {
    // For enclave-init.sh (the image has no jq): one "<id> <vsockPort>" line per shareholder.
    process.stdout.write(shareholderBridges(parseShareholderEndpoints(JSON.parse(readFileSync(values.shareholders, 'utf8')))));
    return;
  }
  let nsm: Nsm;
  if (nitroDevicePresent() && !values['dev-nsm']) {
    nsm = new NitroNsm();
  } else if (values['dev-nsm']) {
    // Development only, loaded on demand so the production bundle carries no dev NSM. The
    // launcher plays the hypervisor: it measures the bundle and passes PCR0.
    if (!values['dev-pcr0'] || !/^[0-9a-f]{96}$/.test(values['dev-pcr0'])) throw new Error('--dev-nsm needs --dev-pcr0 <96 hex digits> (the bundle SHA-384)');
    const { DevNsm } = await import('../attestation/dev.ts');
    const dir = values['dev-nsm'];
    nsm = await DevNsm.create({
      root: { certificatePem: readFileSync(join(dir, 'root.pem'), 'utf8'), privateKeyPem: readFileSync(join(dir, 'root.key'), 'utf8') },
      pcr0: fromHex(values['dev-pcr0']),
    });
  } else {
    throw new Error('no /dev/nsm here; start with --dev-nsm <dev-root-dir> for development');
  }
  const shareholders = await loadShareholders(values.shareholders, Boolean(values['dev-nsm']));
  const socketDir = values['shareholder-socket-dir'];
  const enclave = new Enclave({
    nsm,
    shareholders,
    ...(socketDir ? { shareholderRoutes: new Map(shareholders.map((sh) => [sh.id, shareholderSocketRoute(socketDir, sh.id)])) } : {}),
    allowLoopbackHttp: values['allow-loopback-http'],
    log,
    forwarder: {
      egress: parseEgress(values.egress ?? []),
      egressOnly: values['egress-only'],
      ...(values['ca-file'] ? { ca: readFileSync(values['ca-file'], 'utf8') } : {}),
      connectTimeout: Number(values['connect-timeout']) * 1000,
      headersTimeout: Number(values['headers-timeout']) * 1000,
      bodyTimeout: Number(values['idle-timeout']) * 1000,
    },
  });
  await enclave.boot();
  const address = parseListenAddress(values.listen!);
  if (address.kind === 'vsock') throw new Error('vsock listening goes through the socat bridge; listen on unix: and see infra/README.md');
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

main().catch((e: Error) => {
  log.error({ err: e.message }, 'enclave failed to start');
  process.exit(1);
});
