import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/*.component/**', 'examples/**/build/**', '**/.lowcloud/**', 'test/fixtures/guests/assemblyscript/**', 'packages/api/src/generated/*-validator*.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', performance: 'readonly', WebAssembly: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', AbortController: 'readonly', structuredClone: 'readonly', queueMicrotask: 'readonly', setImmediate: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' }],
      // One-way dependencies: no package reaches into another's internals.
      'no-restricted-imports': ['error', { patterns: [{ group: ['@lowcloud/*/src/*', '@lowcloud/*/dist/*'], message: 'Import the package entry (src/index.ts re-exports what is public).' }] }],
    },
  },
  {
    // planner never imports node-agent or sandbox (DESIGN.md "Packages").
    files: ['packages/planner/**/*.ts', 'packages/api/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: ['@lowcloud/node-agent', '@lowcloud/sandbox', '@lowcloud/node-agent/cli', '@lowcloud/sandbox/cli'], patterns: [{ group: ['@lowcloud/*/src/*', '@lowcloud/*/dist/*'], message: 'Import the package entry.' }] }],
    },
  },
  {
    files: ['packages/sandbox/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: ['@lowcloud/node-agent', '@lowcloud/planner'], patterns: [{ group: ['@lowcloud/*/src/*', '@lowcloud/*/dist/*'], message: 'Import the package entry.' }] }],
    },
  },
  {
    // In sandbox, host code (in the agent) never imports guest code (in the guest host): shared pieces go in src/common/.
    files: ['packages/sandbox/src/host/**/*.ts', 'packages/sandbox/src/cli.ts', 'packages/sandbox/src/index.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['@lowcloud/node-agent', '@lowcloud/planner', '@bytecodealliance/preview2-shim'],
          patterns: [
            { group: ['@lowcloud/*/src/*', '@lowcloud/*/dist/*'], message: 'Import the package entry.' },
            { group: ['**/guest/*', '**/guest/**', '@bytecodealliance/preview2-shim/*'], message: 'Host code imports no guest code: put what both sides need in src/common/.' },
          ],
        },
      ],
    },
  },
);
