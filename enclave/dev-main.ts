/**
 * The development entry: the production entry's options (config.ts) plus
 *   --dev-nsm <root-dir> --dev-pcr0 <96 hex digits>   the dev NSM, signing with the dev root in <root-dir>
 *                                                    (root.pem, root.key) and reporting PCR0 = the bundle's SHA-384
 *   --allow-loopback-http                            permit http://127.0.0.1 upstream origins (mock upstreams)
 * The dev stack (scripts/stack.ts) and tests start this file; the enclave image never contains it
 * (it is outside the import closure of enclave/main.ts). The launcher plays the hypervisor: it
 * measures the bundle and passes PCR0.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DevNsm } from '../attestation/dev.ts';
import { fromHex } from '../protocol/bytes.ts';
import { enclaveSettings, parseEnclaveArgs, readShareholderFile } from './config.ts';
import { parseShareholderEndpoints, shareholderBridges, type ShareholderEndpoint } from './shareholders.ts';
import { log, runEntry, serveEnclave } from './start.ts';

const DEV_USAGE = `development entry (enclave/dev-main.ts) only:
  --dev-nsm <root-dir>               the dev NSM, signing with <root-dir>/root.pem and root.key (required)
  --dev-pcr0 <96 hex digits>         the PCR0 it reports: the enclave bundle's SHA-384 (required)
  --allow-loopback-http              permit http://127.0.0.1 upstream origins (mock upstreams)
`;

const { values, extra } = parseEnclaveArgs(process.argv.slice(2), {
  options: { 'dev-nsm': { type: 'string' }, 'dev-pcr0': { type: 'string' }, 'allow-loopback-http': { type: 'boolean', default: false } },
  usage: DEV_USAGE,
});

/**
 * A development stack may list only ids and URLs: then each missing identity key is read once
 * from the shareholder's /v1/identity at boot (trust on first use, logged loudly). Never in
 * production, where the keys come with the image.
 */
async function devShareholders(raw: unknown): Promise<ShareholderEndpoint[]> {
  if (!Array.isArray(raw) || !raw.some((e) => typeof (e as { publicKey?: unknown })?.publicKey !== 'string')) return parseShareholderEndpoints(raw);
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

runEntry(async () => {
  const settings = enclaveSettings(values);
  if (settings.printShareholderBridges) {
    process.stdout.write(shareholderBridges(parseShareholderEndpoints(readShareholderFile(settings.shareholdersFile))));
    return;
  }
  const dir = extra['dev-nsm'];
  const pcr0 = extra['dev-pcr0'];
  if (typeof dir !== 'string') throw new Error('--dev-nsm <dev-root-dir> is required (the production entry is enclave/main.ts)');
  if (typeof pcr0 !== 'string' || !/^[0-9a-f]{96}$/.test(pcr0)) throw new Error('--dev-pcr0 must be 96 lower-case hex digits (the bundle SHA-384)');
  let root;
  try {
    root = { certificatePem: readFileSync(join(dir, 'root.pem'), 'utf8'), privateKeyPem: readFileSync(join(dir, 'root.key'), 'utf8') };
  } catch {
    throw new Error(`--dev-nsm: ${dir} has no readable root.pem and root.key (scripts/stack.ts makes them)`);
  }
  const nsm = await DevNsm.create({ root, pcr0: fromHex(pcr0) });
  const shareholders = await devShareholders(readShareholderFile(settings.shareholdersFile));
  await serveEnclave(settings, nsm, shareholders, { allowLoopbackHttp: extra['allow-loopback-http'] === true });
  // Started over an IPC channel (npm start, the tests, the benchmark): stop as on SIGTERM when the
  // launcher goes, even if it died without stopping us, rather than run on as an orphan.
  if (process.channel) process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
});
