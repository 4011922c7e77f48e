// Lint: typescript-eslint's recommended rules (syntax-only, fast) plus a few that guard the
// trust boundaries: no console in libraries, no floating promises via the no-misused rules.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', '.scratch/**', 'data/**', 'coverage/**', 'dashboard/dist/**', 'test-artifacts/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      eqeqeq: ['error', 'always'],
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/enclave/*', '**/shareholders/*'], message: 'host/ never imports enclave/ or shareholders/ (DESIGN.md §2)' },
          ],
        },
      ],
    },
  },
  {
    // Only host/ is bound by the import restriction above.
    files: ['protocol/**', 'storage/**', 'attestation/**', 'enclave/**', 'shareholders/**', 'cli/**', 'test/**', 'scripts/**', 'bench/**', 'infra/**', 'dashboard/**'],
    rules: { 'no-restricted-imports': 'off' },
  },
);
