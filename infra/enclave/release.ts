/**
 * Release tooling:
 *   release.ts bundle   --out dist/enclave-bundle.tar
 *   release.ts manifest --release <name> --measurements <nitro-cli output.json> --bundle <tar> --key <file> --out <file>
 *   release.ts keygen   --out <release.key>   (prints the public key to publish)
 *   release.ts lines    [--write]             the image's own lines of code by part (--write: into enclave/README.md)
 * `nitro-cli build-enclave` prints {"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": …, "PCR1": …, "PCR2": …}}.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fromHex, generateOwnerKeyPair, signReleaseManifest, toHex } from '../../protocol/index.ts';
import { buildEnclaveBundle, REPO_ROOT } from './bundle.ts';
import { imageLinesMarkdown, writeReadmeImageLines } from './image-lines.ts';

const [command, ...rest] = process.argv.slice(2);
const { values } = parseArgs({ args: rest, options: { out: { type: 'string' }, release: { type: 'string' }, measurements: { type: 'string' }, bundle: { type: 'string' }, key: { type: 'string' }, write: { type: 'boolean' } } });

export function measurementsFrom(json: string): { '0': string; '1': string; '2': string } {
  const m = (JSON.parse(json) as { Measurements?: Record<string, string> }).Measurements;
  if (!m?.PCR0 || !m.PCR1 || !m.PCR2) throw new Error('measurements JSON lacks Measurements.PCR0/1/2 (nitro-cli build-enclave output)');
  return { '0': m.PCR0.toLowerCase(), '1': m.PCR1.toLowerCase(), '2': m.PCR2.toLowerCase() };
}

if (command === 'bundle') {
  const bundle = buildEnclaveBundle();
  writeFileSync(values.out ?? 'dist/enclave-bundle.tar', bundle.tar);
  process.stdout.write(`${bundle.sha384}  ${values.out ?? 'dist/enclave-bundle.tar'} (${bundle.files.length} files)\n`);
} else if (command === 'manifest') {
  if (!values.release || !values.measurements || !values.bundle || !values.key || !values.out) throw new Error('manifest needs --release --measurements --bundle --key --out');
  const signed = signReleaseManifest(fromHex(readFileSync(values.key, 'utf8').trim()), {
    version: 1,
    name: 'securegate-enclave',
    release: values.release,
    gitCommit: execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim(),
    bundleSha384: createHash('sha384').update(readFileSync(values.bundle)).digest('hex'),
    pcrs: measurementsFrom(readFileSync(values.measurements, 'utf8')),
    nsm: 'nitro',
  });
  writeFileSync(values.out, `${JSON.stringify(signed, null, 2)}\n`);
  process.stdout.write(`signed ${values.out} with release key ${signed.publicKey}\n`);
} else if (command === 'keygen') {
  const pair = generateOwnerKeyPair();
  writeFileSync(values.out ?? 'release.key', toHex(pair.secretKey), { mode: 0o600, flag: 'wx' });
  process.stdout.write(`release public key (publish this): ${toHex(pair.publicKey)}\n`);
} else if (command === 'lines') {
  if (values.write) process.stdout.write(writeReadmeImageLines() ? 'enclave/README.md updated\n' : 'enclave/README.md is current\n');
  else process.stdout.write(`${imageLinesMarkdown()}\n`);
} else if (command !== undefined) {
  process.stderr.write('usage: release.ts bundle|manifest|keygen|lines …\n');
  process.exit(2);
}
