/**
 * Secret comparisons are constant-time (docs/architecture.md §8): no `===` / `!==` between values named like
 * secrets (tokens, secrets, signatures, hashes, MACs, nonces, CSRF tokens, passwords, data keys)
 * anywhere in the shipped code. Comparisons of public values are listed below, each with why.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIRS = ['protocol', 'attestation', 'host', 'enclave', 'shareholders', 'storage', 'cli', 'dashboard/src'];
const SECRETISH = /(token|secret|signature|hash|mac|nonce|csrf|password|dek)/i;
const COMPARISON = /([\w.!?\]\)'"]+(?:\([^()]*\))?)\s*(===|!==)\s*([\w.!?\[\]'"]+(?:\([^()]*\))?)/g;

/** Reviewed comparisons of public values: file → the compared expression and why it is public. */
const PUBLIC: Record<string, string[]> = {
  // The audit chain's hashes are published to every reader.
  'protocol/audit-chain.ts': ['e.prevHash', 'e.hash', 'head.hash', 'previous.hash'],
  // The envelope digest is inside the owner's signed message and recomputed from the public envelope.
  'shareholders/server.ts': ['signed.message.envelopeSha256'],
  // A boolean setting ("require signed requests"), not a signature.
  'dashboard/src/keys.tsx': ['requireSignature !== k.requireSignature'],
  // The verifier's own fresh nonce, sent in the clear with its request for the enclave's head.
  'protocol/usage-receipt-verify.ts': ['signed.head.nonce === nonce'],
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return files(path);
    return /\.tsx?$/.test(name) && !/\.test\.tsx?$/.test(name) ? [path] : [];
  });
}

export function findSecretComparisons(source: string): string[] {
  const hits: string[] = [];
  for (const line of source.split('\n')) {
    if (line.trim().startsWith('//') || line.trim().startsWith('*')) continue;
    for (const m of line.matchAll(COMPARISON)) {
      const [, left, , right] = m;
      const sides = [left!, right!];
      // Checks for absence or type are not comparisons of secret values.
      if (sides.some((s) => /^(null|undefined|['"].*['"]|\d+|true|false)$/.test(s) || s.startsWith('typeof'))) continue;
      if (sides.some((s) => /\.length$/.test(s))) continue;
      if (sides.some((s) => SECRETISH.test(s))) hits.push(m[0]);
    }
  }
  return hits;
}

describe('secret comparisons', () => {
  it('the scanner finds a variable-time comparison of a secret', () => {
    expect(findSecretComparisons('if (presented.token === stored.token) ok();')).toEqual(['presented.token === stored.token']);
    expect(findSecretComparisons('return deviceHash(salt, fp) !== key.deviceHash;')).toHaveLength(1);
    expect(findSecretComparisons('if (key.deviceHash === null) return;')).toEqual([]);
  });

  it('are constant-time everywhere in the shipped code', () => {
    const found: string[] = [];
    for (const dir of DIRS) {
      for (const file of files(join(ROOT, dir))) {
        const rel = relative(ROOT, file);
        for (const hit of findSecretComparisons(readFileSync(file, 'utf8'))) {
          if ((PUBLIC[rel] ?? []).some((allowed) => hit.includes(allowed))) continue;
          found.push(`${rel}: ${hit}`);
        }
      }
    }
    expect(found).toEqual([]);
  });
});
