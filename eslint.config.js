// Lint: typescript-eslint's recommended rules (syntax-only, fast) plus the trust boundaries of
// docs/architecture.md §2 as import rules: a folder may not import the folders it must never
// trust or be trusted by. Tests (`*.test.ts`, test/**) may import across; scripts/, bench/ and
// infra/ wire whole stacks together and are not bound.
import tseslint from 'typescript-eslint';

/** Folders each trust boundary must never import (relative or absolute paths through them). */
const FORBIDDEN_IMPORTS = {
  host: ['enclave', 'shareholders'],
  enclave: ['host', 'shareholders', 'cli'],
  shareholders: ['host', 'enclave', 'cli'],
  protocol: ['host', 'enclave', 'shareholders', 'cli', 'dashboard'],
  attestation: ['host', 'enclave', 'shareholders', 'cli', 'dashboard'],
  cli: ['host'],
  dashboard: ['host'],
};

/**
 * The enclave image is the import closure of enclave/main.ts (infra/enclave/bundle.ts), so what
 * enclave/ imports is what the image holds: the protocol and attestation modules it uses, never
 * their barrels (which pull in every module), owner-side protocol code, or the dev NSM — which
 * only the development entry, enclave/dev-main.ts, may name.
 */
const ENCLAVE_IMAGE = [
  {
    group: ['**/protocol/index.ts', '**/attestation/index.ts'],
    message: 'enclave/ imports the protocol/attestation modules it uses, not a folder barrel: the enclave image is the import closure of enclave/main.ts (enclave/README.md)',
  },
  {
    group: ['**/protocol/owner', '**/protocol/owner/**'],
    message: 'enclave/ never imports owner-side protocol code (protocol/owner/): the enclave never runs it and its image must not contain it',
  },
  {
    group: [
      '**/protocol/usage-receipt-verify.ts', '**/protocol/allow-list-canonical.ts', '**/protocol/lease-limits.ts',
      '**/protocol/share-envelope-seal.ts', '**/attestation/cose.ts', '**/protocol/rpc-encode.ts',
      '**/protocol/shareholder-status.ts', '**/protocol/loopback-url.ts', '**/protocol/provider-host-data.ts',
    ],
    message: 'enclave/ never imports protocol/attestation code only its verifiers, owners or shareholders run (checking receipts, canonical allow-lists, lease limits, sealing share envelopes, COSE_Sign1, encoding connection descriptors, shareholder statuses, loopback URLs, host-only provider data): its image must not contain it (enclave/README.md)',
  },
];
const DEV_NSM = {
  group: ['**/attestation/dev.ts', '**/attestation/dev-pcrs.ts'],
  message: 'only the development entry, enclave/dev-main.ts, may name the dev NSM: the production image must not contain it',
};

const restrict = (files, ignores, patterns) => ({ files, ignores, rules: { 'no-restricted-imports': ['error', { patterns }] } });

const folderPatterns = (folder, forbidden) =>
  forbidden.map((other) => ({
    group: [`**/${other}`, `**/${other}/**`],
    message: `${folder}/ never imports ${other}/ (trust boundaries, docs/architecture.md §2); shared contracts live in protocol/`,
  }));

/** One rule entry per file set (a later entry replaces an earlier one's options, so each set gets all its patterns at once). */
const boundary = (folder, forbidden) => {
  const files = [`${folder}/**/*.ts`, `${folder}/**/*.tsx`];
  const tests = ['**/*.test.ts', '**/*.test.tsx'];
  if (folder !== 'enclave') return [restrict(files, tests, folderPatterns(folder, forbidden))];
  return [
    restrict(files, [...tests, 'enclave/dev-main.ts'], [...folderPatterns(folder, forbidden), ...ENCLAVE_IMAGE, DEV_NSM]),
    restrict(['enclave/dev-main.ts'], [], [...folderPatterns(folder, forbidden), ...ENCLAVE_IMAGE]),
  ];
};

export default tseslint.config(
  { ignores: ['node_modules/**', '.scratch/**', 'data/**', 'coverage/**', 'dashboard/dist/**', 'test-artifacts/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      eqeqeq: ['error', 'always'],
    },
  },
  ...Object.entries(FORBIDDEN_IMPORTS).flatMap(([folder, forbidden]) => boundary(folder, forbidden)),
);
