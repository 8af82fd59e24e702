// The sample suite with a setup file that loads the database driver before request-budget starts
// (a common mistake): measureCost must refuse to pass on queries it cannot count.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    setupFiles: ['./early-driver.ts', '@request-budget/node/vitest'],
    globalSetup: ['@request-budget/node/vitest/global-setup'],
  },
});
