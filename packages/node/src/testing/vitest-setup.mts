/**
 * vitest `setupFiles: ['@request-budget/node/vitest']`: starts request-budget in each test
 * worker before the test file loads its database driver, adds `toBeWithinBudget`, and — when the
 * global setup `@request-budget/node/vitest/global-setup` is configured — records every
 * request's cost per route and test for the baseline gate.
 */
import { createRequire, register } from 'node:module';
import { afterAll, expect } from 'vitest';

const require = createRequire(import.meta.url);
const { activeConfig } = require('../sdk.js') as typeof import('../sdk.js');

// Test files and the app import CommonJS libraries (pg, express) as ES modules: only the ESM
// hook sees those imports. Registered once per worker, before anything is started.
if (activeConfig() === undefined) {
  try {
    register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
  } catch (error) {
    process.stderr.write(
      `request-budget: ES module instrumentation unavailable (${error instanceof Error ? error.message : String(error)}); libraries imported as ES modules may not be counted\n`,
    );
  }
}
const { startForTests } = require('./runner-start.js') as typeof import('./runner-start.js');
const { budgetMatchers } = require('./matchers.js') as typeof import('./matchers.js');
const { BaselineRecorder } = require('./recorder.js') as typeof import('./recorder.js');
const { RUN_DIR_ENV } = require('./settings.js') as typeof import('./settings.js');

startForTests();
expect.extend(budgetMatchers);

const runDir = process.env[RUN_DIR_ENV];
if (runDir !== undefined && runDir !== '') {
  const recorder = new BaselineRecorder({
    runDir,
    runningTest: () => {
      const state = expect.getState();
      return { file: state.testPath, name: state.currentTestName };
    },
  });
  recorder.start();
  afterAll(() => recorder.flush());
}
