/**
 * Customers verify the live enclave themselves: `securegate attest verify --server` picks its own
 * nonce, fetches a fresh document through the host, and checks chain, nonce and PCRs against a
 * release manifest signed by the release key they pinned.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateOwnerKeyPair, signReleaseManifest, toHex, type SignedReleaseManifest } from '../../protocol/index.ts';
import { startTestStack } from './helpers.ts';

const bin = fileURLToPath(new URL('../../bin/securegate.mjs', import.meta.url));
let stack: Awaited<ReturnType<typeof startTestStack>>;
let devRoot: string;

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => execFile(process.execPath, [bin, ...args], (e, stdout, stderr) => resolve({ code: e ? (e.code as number) : 0, stdout, stderr })));
}

beforeAll(async () => {
  stack = await startTestStack();
  devRoot = join(stack.dataDir, 'dev-root', 'root.pem');
});
afterAll(async () => {
  await stack?.cleanup();
});

const verify = (manifest: string, extra: string[] = []) =>
  cli(['attest', 'verify', '--server', stack.hostUrl, '--manifest', manifest, '--release-key', stack.releasePublicKey, '--root', devRoot, '--json', ...extra]);

describe('securegate attest verify --server', () => {
  it('verifies the live enclave against the signed release manifest with its own fresh nonce', async () => {
    const r = await verify(stack.manifestPath);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const out = JSON.parse(r.stdout);
    const signed = JSON.parse(readFileSync(stack.manifestPath, 'utf8')) as SignedReleaseManifest;
    expect(out).toMatchObject({ valid: true, release: 'dev', pcrs: signed.manifest.pcrs, serverManifestMatches: true });
    expect(out.nonce).toMatch(/^[0-9a-f]{64}$/);
    const again = JSON.parse((await verify(stack.manifestPath)).stdout);
    expect(again.nonce).not.toBe(out.nonce);
  });

  it('refuses a manifest edited after signing', async () => {
    const signed = JSON.parse(readFileSync(stack.manifestPath, 'utf8')) as SignedReleaseManifest;
    const path = join(stack.dataDir, 'edited.json');
    writeFileSync(path, JSON.stringify({ ...signed, manifest: { ...signed.manifest, release: 'v9.9.9' } }));
    const r = await verify(path);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).code).toBe('manifest_signature_invalid');
  });

  it('refuses a manifest signed by a key other than the pinned release key', async () => {
    const signed = JSON.parse(readFileSync(stack.manifestPath, 'utf8')) as SignedReleaseManifest;
    const path = join(stack.dataDir, 'other-key.json');
    writeFileSync(path, JSON.stringify(signReleaseManifest(generateOwnerKeyPair().secretKey, signed.manifest)));
    expect(JSON.parse((await verify(path)).stdout).code).toBe('manifest_signature_invalid');
  });

  it('fails when the enclave runs other code than the manifest names (PCR0 differs)', async () => {
    const signed = JSON.parse(readFileSync(stack.manifestPath, 'utf8')) as SignedReleaseManifest;
    const releaseKey = readFileSync(join(stack.dataDir, 'dev-root', 'release.key'), 'utf8').trim();
    const other = signReleaseManifest(Buffer.from(releaseKey, 'hex'), { ...signed.manifest, release: 'next', pcrs: { ...signed.manifest.pcrs, '0': 'ab'.repeat(48) } });
    const path = join(stack.dataDir, 'next.json');
    writeFileSync(path, JSON.stringify(other));
    const r = await verify(path);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).code).toBe('attestation_pcr_mismatch');
    expect(toHex(Buffer.from(other.publicKey, 'hex'))).toBe(stack.releasePublicKey);
  });

  it('never accepts a dev release against the production (AWS) root', async () => {
    const r = await cli(['attest', 'verify', '--server', stack.hostUrl, '--manifest', stack.manifestPath, '--release-key', stack.releasePublicKey, '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).code).toBe('manifest_dev_release');
  });

  it('serves the manifest with the document on GET /v1/attestation', async () => {
    const res = await fetch(`${stack.hostUrl}/v1/attestation?nonce=abcd`);
    const body = (await res.json()) as { document: string; manifest: SignedReleaseManifest };
    expect(body.manifest.manifest.pcrs['0']).toMatch(/^[0-9a-f]{96}$/);
    expect((await fetch(`${stack.hostUrl}/v1/attestation?nonce=zz`)).status).toBe(400);
  });
});
