/**
 * The production entry of the enclave image (infra/enclave/enclave-init.sh starts it):
 *   node enclave/main.ts --listen unix:/run/securegate/enclave.sock --shareholders /app/shareholders.json \
 *     --shareholder-socket-dir /run/securegate --egress <origin>=unix:<path> … --egress-only
 * (`--help` lists every option, config.ts). It uses the Nitro NSM (/dev/nsm) and nothing else:
 * the dev NSM is chosen only by the development entry, dev-main.ts, which this file never names,
 * so the image — the import closure of this file — does not contain it.
 */
import { nitroDevicePresent, NitroNsm } from '../attestation/nsm.ts';
import { enclaveSettings, parseEnclaveArgs, readShareholderFile } from './config.ts';
import { parseShareholderEndpoints, shareholderBridges } from './shareholders.ts';
import { runEntry, serveEnclave } from './start.ts';

const { values } = parseEnclaveArgs(process.argv.slice(2));

runEntry(async () => {
  const settings = enclaveSettings(values);
  // In production the file is part of the image, so the PCRs cover it.
  const shareholders = parseShareholderEndpoints(readShareholderFile(settings.shareholdersFile));
  if (settings.printShareholderBridges) {
    // For enclave-init.sh (the image has no jq): one "<id> <vsockPort>" line per shareholder.
    process.stdout.write(shareholderBridges(shareholders));
    return;
  }
  if (!nitroDevicePresent()) throw new Error('no /dev/nsm here; for development start enclave/dev-main.ts --dev-nsm <dev-root-dir> (scripts/stack.ts does)');
  await serveEnclave(settings, new NitroNsm(), shareholders);
});
