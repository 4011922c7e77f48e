/**
 * The trust boundaries of docs/architecture.md §2 as lint rules (eslint.config.js): each forbidden
 * import fails `npm run lint`, each allowed one passes. Runs ESLint's Node API on small snippets
 * linted as if they sat at the given path; no file is written.
 */
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const eslint = new ESLint({ cwd: root });

/** The rules that fire on `code` linted as `filePath` (relative to the repository root). */
async function rulesFiredOn(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${root}${filePath}` });
  return result!.messages.map((m) => m.ruleId ?? `fatal: ${m.message}`);
}

/** Where a file of each folder sits, and how it reaches the repository root from there. */
const places: Record<string, { file: string; up: string }> = {
  host: { file: 'host/admin/boundary-probe.ts', up: '../../' },
  enclave: { file: 'enclave/boundary-probe.ts', up: '../' },
  shareholders: { file: 'shareholders/boundary-probe.ts', up: '../' },
  protocol: { file: 'protocol/providers/boundary-probe.ts', up: '../../' },
  attestation: { file: 'attestation/boundary-probe.ts', up: '../' },
  cli: { file: 'cli/boundary-probe.ts', up: '../' },
  dashboard: { file: 'dashboard/src/boundary-probe.tsx', up: '../../' },
};

const forbidden: Array<[string, string]> = [
  ['host', 'enclave'], ['host', 'shareholders'],
  ['enclave', 'host'], ['enclave', 'shareholders'], ['enclave', 'cli'],
  ['shareholders', 'host'], ['shareholders', 'enclave'], ['shareholders', 'cli'],
  ...['host', 'enclave', 'shareholders', 'cli', 'dashboard'].flatMap((to): Array<[string, string]> => [['protocol', to], ['attestation', to]]),
  ['cli', 'host'],
  ['dashboard', 'host'],
];

const allowed: Array<[string, string]> = [
  ...Object.keys(places).filter((from) => from !== 'protocol').map((from): [string, string] => [from, 'protocol']),
  ['host', 'attestation'], ['host', 'storage'], ['enclave', 'attestation'], ['shareholders', 'attestation'], ['cli', 'attestation'],
];

describe('import boundaries', () => {
  it.each(forbidden)('refuses an import from %s/ of %s/', async (from, to) => {
    const { file, up } = places[from]!;
    expect(await rulesFiredOn(file, `import { thing } from '${up}${to}/index.ts';\nexport const used = thing;\n`)).toEqual(['no-restricted-imports']);
  });

  it.each(allowed)('lets %s/ import %s/', async (from, to) => {
    const { file, up } = places[from]!;
    // The enclave names the module it uses, never a barrel (below).
    const target = from === 'enclave' ? ({ protocol: 'protocol/bytes.ts', attestation: 'attestation/nsm.ts' } as Record<string, string>)[to]! : `${to}/index.ts`;
    expect(await rulesFiredOn(file, `import { thing } from '${up}${target}';\nexport const used = thing;\n`)).toEqual([]);
  });

  it.each([
    '../protocol/index.ts', '../attestation/index.ts', '../protocol/owner/index.ts', '../protocol/owner/onboard.ts',
    '../protocol/owner/release-manifest.ts', '../attestation/dev.ts', '../attestation/dev-pcrs.ts',
    '../protocol/usage-receipt-verify.ts', '../protocol/allow-list-canonical.ts', '../protocol/lease-limits.ts',
    '../protocol/share-envelope-seal.ts', '../attestation/cose.ts', '../protocol/rpc-encode.ts',
    '../protocol/shareholder-status.ts', '../protocol/loopback-url.ts', '../protocol/owner/owner-sign.ts',
    '../protocol/provider-host-data.ts',
  ])('refuses an import of %s in enclave/ (the image is its import closure)', async (target) => {
    expect(await rulesFiredOn('enclave/boundary-probe.ts', `import { thing } from '${target}';\nexport const used = thing;\n`)).toEqual(['no-restricted-imports']);
    expect(await rulesFiredOn('enclave/boundary-probe.ts', `export type { Thing } from '${target}';\n`)).toEqual(['no-restricted-imports']);
  });

  it('lets only the development entry name the dev NSM, and still not a barrel or owner-side code', async () => {
    expect(await rulesFiredOn('enclave/dev-main.ts', `import { DevNsm } from '../attestation/dev.ts';\nexport const used = DevNsm;\n`)).toEqual([]);
    expect(await rulesFiredOn('enclave/main.ts', `import { DevNsm } from '../attestation/dev.ts';\nexport const used = DevNsm;\n`)).toEqual(['no-restricted-imports']);
    expect(await rulesFiredOn('enclave/dev-main.ts', `import { thing } from '../protocol/index.ts';\nexport const used = thing;\n`)).toEqual(['no-restricted-imports']);
    expect(await rulesFiredOn('enclave/dev-main.ts', `import { thing } from '../host/index.ts';\nexport const used = thing;\n`)).toEqual(['no-restricted-imports']);
    expect(await rulesFiredOn('enclave/key-resolver.test.ts', `import { thing } from '../protocol/index.ts';\nexport const used = thing;\n`)).toEqual([]);
  });

  it('refuses type-only imports and re-exports across a boundary too', async () => {
    expect(await rulesFiredOn('cli/boundary-probe.ts', `import type { Thing } from '../host/admin/index.ts';\nexport type Used = Thing;\n`)).toEqual(['no-restricted-imports']);
    expect(await rulesFiredOn('host/boundary-probe.ts', `export { thing } from '../enclave/forward.ts';\n`)).toEqual(['no-restricted-imports']);
  });

  it('refuses a deep import into a forbidden folder, not only its entry', async () => {
    expect(await rulesFiredOn('dashboard/src/boundary-probe.tsx', `import { thing } from '../../host/request/classify.ts';\nexport const used = thing;\n`)).toEqual(['no-restricted-imports']);
  });

  it('lets tests import across boundaries', async () => {
    expect(await rulesFiredOn('host/boundary-probe.test.ts', `import { thing } from '../enclave/index.ts';\nexport const used = thing;\n`)).toEqual([]);
    expect(await rulesFiredOn('test/e2e/boundary-probe.ts', `import { thing } from '../../enclave/index.ts';\nimport { other } from '../../host/index.ts';\nexport const used = [thing, other];\n`)).toEqual([]);
  });

  it('lets a folder import its own modules whose names merely contain another folder\'s name', async () => {
    expect(await rulesFiredOn('host/boundary-probe.ts', `import { thing } from './enclave-client.ts';\nimport { other } from './dashboard.ts';\nexport const used = [thing, other];\n`)).toEqual([]);
  });
});
