import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevRoot, DevNsm } from '../attestation/dev.ts';

const bin = fileURLToPath(new URL('../bin/securegate.mjs', import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`../test/fixtures/nitro/${name}`, import.meta.url));
const ANJUNA = fixture('anjuna-prod-pubkey-2021-03-24.cbor');
const EVERVAULT = fixture('evervault-debug-2023-09-18.b64');
const PCR0 = '672cd3c91b7ac756037d260051169c70b1de59c7a3a9a8253322c98763697891c722fec043cbf72a824ae5d5ac41fc41';

/** Runs the real installed bin in a child process, as a user would. */
function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], (error, stdout, stderr) => {
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-attest-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('securegate attest verify', () => {
  it('prints the documented JSON for a valid raw CBOR document and exits 0', async () => {
    const r = await run(['attest', 'verify', ANJUNA, '--at', '1616602241', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ valid: true, moduleId: 'i-0a6d65e7122308898-enc017846bcd2f820da', timestamp: 1616602241734, digest: 'SHA384', userData: null, nonce: null });
    expect(out.pcrs['0']).toBe(PCR0);
    expect(Object.keys(out.pcrs)).toHaveLength(16);
    expect(out.publicKey).toMatch(/^30820122/);
  });

  it('reads base64 documents and accepts debug mode only with --allow-debug', async () => {
    const refused = await run(['attest', 'verify', EVERVAULT, '--at', '1695050165', '--json']);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout)).toMatchObject({ valid: false, code: 'attestation_debug_mode' });
    const accepted = await run(['attest', 'verify', EVERVAULT, '--at', '1695050165', '--json', '--allow-debug']);
    expect(accepted.code).toBe(0);
    expect(JSON.parse(accepted.stdout).nonce).toHaveLength(512);
  });

  it('reports which owner-controlled bindings a document carries (PCR3 role, PCR8 signing certificate)', async () => {
    const r = await run(['attest', 'verify', ANJUNA, '--at', '1616602241', '--json']);
    expect(JSON.parse(r.stdout).bindings).toEqual({
      pcr3: 'bddd5d9c1ecbb66399451d7af33133fab5edfbcfdde56f0182412e8a2313ed2303282c3e2554a77bf5b97b5c000dacc9',
      pcr8: null,
      ownerBound: true,
    });
    const text = await run(['attest', 'verify', ANJUNA, '--at', '1616602241']);
    expect(text.stdout).toContain('PCR8 (EIF signing certificate) none (unsigned image)');
  });

  it('exits 1 with attestation_expired one second after the chain ends', async () => {
    const r = await run(['attest', 'verify', ANJUNA, '--at', '1616612783', '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ valid: false, code: 'attestation_expired' });
  });

  it('checks --expect-pcr and --nonce', async () => {
    const ok = await run(['attest', 'verify', ANJUNA, '--at', '1616602241', '--expect-pcr', `0=${PCR0}`, '--json']);
    expect(ok.code).toBe(0);
    const wrong = await run(['attest', 'verify', ANJUNA, '--at', '1616602241', '--expect-pcr', `0=${PCR0.replace(/41$/, '42')}`, '--json']);
    expect(JSON.parse(wrong.stdout).code).toBe('attestation_pcr_mismatch');
    const nonce = await run(['attest', 'verify', ANJUNA, '--at', '1616602241', '--nonce', '00ff', '--json']);
    expect(JSON.parse(nonce.stdout).code).toBe('attestation_nonce_mismatch');
  });

  it('verifies a dev document only with --root pointing at the dev root', async () => {
    const root = await createDevRoot();
    const nsm = await DevNsm.create({ root, pcr0: new Uint8Array(48).fill(3) });
    const docPath = join(dir, 'dev.cbor');
    const rootPath = join(dir, 'dev-root.pem');
    await writeFile(docPath, await nsm.getAttestationDocument({ nonce: Uint8Array.of(0xab, 0xcd) }));
    await writeFile(rootPath, root.certificatePem);
    const againstAws = await run(['attest', 'verify', docPath, '--json']);
    expect(JSON.parse(againstAws.stdout).code).toBe('attestation_chain_invalid');
    const againstDev = await run(['attest', 'verify', docPath, '--root', rootPath, '--nonce', 'abcd', '--json']);
    expect(againstDev.code).toBe(0);
    expect(JSON.parse(againstDev.stdout).root).toBe(rootPath);
  });

  it('prints a readable report without --json', async () => {
    const r = await run(['attest', 'verify', ANJUNA, '--at', '1616602241']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('valid');
    expect(r.stdout).toContain(`PCR0       ${PCR0}`);
  });

  it('exits 2 on usage errors and 4 on unreadable files', async () => {
    expect((await run(['attest', 'verify', ANJUNA, '--at', 'yesterday'])).code).toBe(2);
    expect((await run(['attest', 'verify', ANJUNA, '--expect-pcr', 'zero'])).code).toBe(2);
    expect((await run(['attest', 'verify', join(dir, 'missing.cbor')])).code).toBe(4);
    expect((await run(['attest', 'verify'])).code).toBe(2);
  });

  it('exits 1 with attestation_malformed for a file that is not a document', async () => {
    const p = join(dir, 'junk.bin');
    await writeFile(p, 'hello world, not an attestation');
    const r = await run(['attest', 'verify', p, '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).code).toBe('attestation_malformed');
  });
});

describe('securegate attest verify --pcr3/--pcr8', () => {
  const ANJUNA_PCR3 = 'bddd5d9c1ecbb66399451d7af33133fab5edfbcfdde56f0182412e8a2313ed2303282c3e2554a77bf5b97b5c000dacc9';
  it('reports which of the owner bindings you name the document satisfies', async () => {
    const r = await run(['attest', 'verify', ANJUNA, '--at', '1616602241', '--json', '--pcr3', ANJUNA_PCR3]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).bindings.satisfied).toEqual({ pcr3: true });
    const text = await run(['attest', 'verify', ANJUNA, '--at', '1616602241', '--pcr3', ANJUNA_PCR3]);
    expect(text.stdout).toContain('PCR3 (parent IAM role) present — matches yours ✔');
  });

  it('refuses a document that lacks the binding you named (an unsigned image against your PCR8, another role)', async () => {
    const r = await run(['attest', 'verify', ANJUNA, '--at', '1616602241', '--json', '--pcr8', 'ab'.repeat(48)]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ valid: false, code: 'attestation_pcr_mismatch' });
    const role = await run(['attest', 'verify', ANJUNA, '--at', '1616602241', '--json', '--pcr3', 'arn:aws:iam::123456789012:role/someone-else']);
    expect(role.code).toBe(1);
    expect(JSON.parse(role.stdout).message).toContain('PCR3 differ');
  });
});
