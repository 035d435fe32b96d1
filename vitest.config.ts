import { defineConfig } from 'vitest/config';

// Unit tests live next to the code (packages/*/src/**/*.test.ts); end-to-end tests, which run the
// built CLI and real agent processes, live in test/. `npm test` builds first (tsc -b), so child
// processes always run the compiled dist/ code.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts'],
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // e2e tests start agents and guests; on 2 cores running files in parallel makes timing flaky.
          fileParallelism: false,
        },
      },
    ],
  },
});
