import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'collector/test/**/*.test.ts', 'test/**/*.test.ts'],
    // End-to-end files start app processes and real services; on 2 shared cores, two files at
    // a time keeps timings honest without serialising everything.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Under CI, also write a JSON report; .ci/run turns it into a plain "N passed, N failed" line.
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: 'test-results/vitest.json' },
  },
});
