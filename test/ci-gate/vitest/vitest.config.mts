// The sample service's vitest suite, run by test/ci-gate.test.ts as a user runs theirs:
// request-budget in setupFiles, the per-route baseline gate in globalSetup.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: import.meta.dirname,
    include: ['*.spec.ts'],
    pool: process.env.CIGATE_POOL === 'forks' ? 'forks' : 'threads',
    setupFiles: [
      // A setup file that loads the database driver before request-budget (a common mistake).
      ...(process.env.CIGATE_EARLY_DRIVER === '1' ? ['./early-driver.ts'] : []),
      '@request-budget/node/vitest',
    ],
    globalSetup: ['@request-budget/node/vitest/global-setup'],
  },
});
