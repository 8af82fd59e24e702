// The sample service's vitest suite, configured as a project configures its own: request-budget
// in every test file (setupFiles), the per-route baseline gate around the run (globalSetup).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    setupFiles: ['@request-budget/node/vitest'],
    globalSetup: ['@request-budget/node/vitest/global-setup'],
  },
});
