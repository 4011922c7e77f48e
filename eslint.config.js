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

const boundary = (folder, forbidden) => ({
  files: [`${folder}/**/*.ts`, `${folder}/**/*.tsx`],
  ignores: ['**/*.test.ts', '**/*.test.tsx'],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: forbidden.map((other) => ({
          group: [`**/${other}`, `**/${other}/**`],
          message: `${folder}/ never imports ${other}/ (trust boundaries, docs/architecture.md §2); shared contracts live in protocol/`,
        })),
      },
    ],
  },
});

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
  ...Object.entries(FORBIDDEN_IMPORTS).map(([folder, forbidden]) => boundary(folder, forbidden)),
);
