/**
 * enclave/README.md states the image's own size, generated from the import closure of
 * enclave/main.ts (image-lines.ts). Every module of the image belongs to a described part, and
 * the stated figures are those of the tree (within 3 %, so a small edit does not need a README
 * change; regenerate with `node infra/enclave/release.ts lines --write`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './bundle.ts';
import { imageParts, README_BEGIN, README_END } from './image-lines.ts';

const readme = readFileSync(join(REPO_ROOT, 'enclave/README.md'), 'utf8');
const section = readme.slice(readme.indexOf(README_BEGIN), readme.indexOf(README_END));

describe('the enclave image size in enclave/README.md', () => {
  it('describes every part of the image, and every module belongs to one', () => {
    const { parts } = imageParts();
    const stated = [...section.matchAll(/^\| ([^|]+) \| [^|]+ \| (\d+) \| (\d+) \| (\d+) \|$/gm)].map((m) => m[1]!.trim());
    expect(stated).toEqual(parts.map((p) => p.part));
    expect(parts.some((p) => p.part.startsWith('other '))).toBe(false);
  });

  it('states the lines of code the closure has now (regenerate: node infra/enclave/release.ts lines --write)', () => {
    const { code, lines } = imageParts();
    const m = /\*\*(\d+) lines of code\*\* \((\d+) with comments and blank lines\)/.exec(section);
    expect(m).not.toBeNull();
    expect(Math.abs(Number(m![1]) - code) / code).toBeLessThan(0.03);
    expect(Math.abs(Number(m![2]) - lines) / lines).toBeLessThan(0.03);
  });
});
