// ESLint: typescript-eslint's type-aware recommended rules over the TypeScript sources, with
// promises that nobody awaits or handles treated as errors (a lost rejection in instrumentation
// code is a crash or a silent hole in the host app).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['**/dist/**', '**/node_modules/**', 'coverage/**', 'test-results/**', 'bench/results/**', 'test/fixtures/stacks/prisma/generated/**'],
  },
  {
    files: ['packages/*/src/**/*.ts', 'packages/*/src/**/*.mts', 'collector/src/**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Instrumentation patches third-party code: wrappers must keep the patched method's own
      // `this` beside the instrumentation's, hold prototype methods unbound to call them later,
      // and pass along whatever the library returns, which is untyped by nature.
      '@typescript-eslint/no-this-alias': 'off',
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
    },
  },
);
