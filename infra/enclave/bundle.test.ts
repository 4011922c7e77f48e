import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildEnclaveBundle, codeLines, importClosure, REPO_ROOT, runtimeImports } from './bundle.ts';

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
    expect(files).toContain('attestation/nsm.ts');
    expect(files).toContain('node_modules/undici/package.json');
    expect(files).toContain('node_modules/@hpke/common/package.json');
    expect(files.some((f) => !f.startsWith('node_modules/') && f.endsWith('.test.ts'))).toBe(false);
    expect(files).not.toContain('attestation/dev.ts');
    expect(files.some((f) => f.startsWith('host/') || f.startsWith('shareholders/') || f.startsWith('/'))).toBe(false);
  });

  it('is exactly the import closure of enclave/main.ts and the npm packages it imports', () => {
    const { files } = buildEnclaveBundle();
    const closure = importClosure('enclave/main.ts');
    expect(files.filter((f) => !f.startsWith('node_modules/') && f !== 'package.json')).toEqual(closure.modules);
    for (const pkg of closure.packages) expect(files).toContain(`node_modules/${pkg}/package.json`);
    // What the enclave does not import is not in it: the host's and the CLI's packages, nor
    // attestation verification (the shareholders and the CLI verify; the enclave only attests).
    for (const absent of ['node_modules/fastify/package.json', 'node_modules/pg/package.json', 'node_modules/@peculiar/x509/package.json', 'attestation/verify.ts']) {
      expect(files).not.toContain(absent);
    }
  });

  it('contains no owner-side module, no protocol barrel and no dev NSM: the closure is computed, not listed', () => {
    const { modules } = importClosure('enclave/main.ts');
    expect(modules.filter((m) => m.startsWith('protocol/owner/'))).toEqual([]);
    for (const absent of ['protocol/index.ts', 'protocol/audit-chain.ts', 'protocol/request-signature.ts', 'protocol/display.ts', 'attestation/dev.ts', 'attestation/dev-pcrs.ts', 'enclave/dev-main.ts']) {
      expect(modules).not.toContain(absent);
    }
    expect(modules.every((m) => /^(enclave|protocol|attestation)\//.test(m) && !m.endsWith('.test.ts'))).toBe(true);
    // The development entry reaches the dev NSM, so the same computation would catch it in the image.
    expect(importClosure('enclave/dev-main.ts').modules).toContain('attestation/dev.ts');
  });

  it('follows static and dynamic imports and re-exports, not type-only ones, and refuses a computed import()', () => {
    const code = [
      "import { a } from './a.ts';",
      "import type { B } from './b.ts';",
      "export * from './c.ts';",
      "export type * from './d.ts';",
      "export type { E } from './e.ts';",
      "import 'side-effect';",
      "const f = await import('./f.ts');",
      'function g() { return import(`./g.ts`); }',
    ].join('\n');
    expect(runtimeImports('x.ts', code)).toEqual(['./a.ts', './c.ts', 'side-effect', './f.ts', './g.ts']);
    expect(() => runtimeImports('x.ts', "const name = './h.ts';\nawait import(name);")).toThrow(/x\.ts:2: import\(\) of a computed specifier/);
  });

  it('counts lines of code without blank lines and comments', () => {
    expect(codeLines('x.ts', "/**\n * doc\n */\nconst a = 1; // note\n\n// only a comment\nconst b = '// not a comment';\n/* x */ const c = `\n// in a template\n`;\n")).toBe(5);
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
