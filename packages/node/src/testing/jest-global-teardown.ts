/**
 * jest `globalTeardown: '@request-budget/node/jest/global-teardown'` (in the preset): the
 * per-route baseline gate, once every test file has run. Prints the report and fails the run
 * on a regression.
 */
import { finishRun } from './gate';
import { gateSettings, RUN_DIR_ENV } from './settings';

export = function globalTeardown(): void {
  const runDir = process.env[RUN_DIR_ENV];
  if (runDir === undefined || runDir === '') return;
  delete process.env[RUN_DIR_ENV];
  if (finishRun(runDir, gateSettings())) {
    process.exitCode = 1;
    const error = new Error('request-budget: the per-route baseline gate failed (see the report above)');
    error.stack = error.message;
    throw error;
  }
};
