/**
 * The enclave bundle's digest: SHA-384 over the sorted relative paths and contents of every
 * source file the enclave image carries (enclave/, protocol/, attestation/, excluding tests).
 * The dev NSM reports it as PCR0, so a shareholder's dev policy pins this exact code.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BUNDLE_DIRS = ['enclave', 'protocol', 'attestation'];
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return listFiles(p);
    return e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
  });
}

export function enclaveBundleFiles(root = repoRoot): string[] {
  return BUNDLE_DIRS.flatMap((d) => listFiles(join(root, d)))
    .map((p) => relative(root, p).split('\\').join('/'))
    .sort();
}

export function enclaveBundleDigest(root = repoRoot): Uint8Array {
  const hash = createHash('sha384');
  for (const file of enclaveBundleFiles(root)) {
    const content = readFileSync(join(root, file));
    hash.update(`${file}\0${content.length}\0`).update(content);
  }
  return new Uint8Array(hash.digest());
}
