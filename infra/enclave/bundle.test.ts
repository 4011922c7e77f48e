import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildEnclaveBundle, REPO_ROOT } from './bundle.ts';

describe('enclave bundle', () => {
  it('is byte-identical when built twice, including from two fresh clones at different paths', () => {
    const a = buildEnclaveBundle();
    const b = buildEnclaveBundle();
    expect(a.tar.equals(b.tar)).toBe(true);
    // Two clean checkouts of HEAD elsewhere (different absolute paths, file times and inode
    // order) with the same installed dependencies give the same bytes.
    const dir = mkdtempSync(join(tmpdir(), 'sg-bundle-'));
    try {
      const builds = ['one', 'two'].map((name) => {
        const tree = join(dir, name);
        execFileSync('git', ['clone', '-q', REPO_ROOT, tree]);
        execFileSync('ln', ['-s', join(REPO_ROOT, 'node_modules'), join(tree, 'node_modules')]);
        return buildEnclaveBundle(tree);
      });
      expect(builds[0]!.tar.equals(builds[1]!.tar)).toBe(true);
      expect(builds[0]!.sha384).toMatch(/^[0-9a-f]{96}$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('holds the enclave sources and pinned dependencies, and never tests or the dev NSM', () => {
    const { files } = buildEnclaveBundle();
    expect(files).toContain('enclave/main.ts');
    expect(files).toContain('protocol/sealed-record.ts');
    expect(files).toContain('attestation/verify.ts');
    expect(files).toContain('node_modules/undici/package.json');
    expect(files).toContain('node_modules/@hpke/common/package.json');
    expect(files.some((f) => !f.startsWith('node_modules/') && f.endsWith('.test.ts'))).toBe(false);
    expect(files).not.toContain('attestation/dev.ts');
    expect(files.some((f) => f.startsWith('host/') || f.startsWith('shareholders/') || f.startsWith('/'))).toBe(false);
  });

  it('is a valid tar that the system tar extracts with zero mtimes', () => {
    const { tar, files } = buildEnclaveBundle();
    const dir = mkdtempSync(join(tmpdir(), 'sg-tar-'));
    try {
      writeFileSync(join(dir, 'b.tar'), tar);
      const listing = execFileSync('tar', ['-tvf', join(dir, 'b.tar')], { encoding: 'utf8', maxBuffer: 64 << 20 }).trim().split('\n');
      expect(listing).toHaveLength(files.length);
      expect(listing.every((l) => l.includes('1970-01-01'))).toBe(true);
      expect(execFileSync('tar', ['-tf', join(dir, 'b.tar')], { encoding: 'utf8', maxBuffer: 64 << 20 }).trim().split('\n')).toEqual(files);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
