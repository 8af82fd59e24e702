/**
 * vitest `globalSetup: ['@request-budget/node/vitest/global-setup']`: the per-route baseline
 * gate. Gives the test workers a run directory to record into, and when every test file has
 * run, compares what they recorded with the committed baseline (REQUEST_BUDGET_BASELINE) and
 * fails the run on a regression, printing the table.
 */
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { finishRun } = require('./gate.js') as typeof import('./gate.js');
const { gateSettings, RUN_DIR_ENV } = require('./settings.js') as typeof import('./settings.js');

export default function setup(): () => void {
  const runDir = mkdtempSync(join(tmpdir(), 'request-budget-run-'));
  // Test workers are started after the global setup and inherit the environment.
  process.env[RUN_DIR_ENV] = runDir;
  return () => {
    delete process.env[RUN_DIR_ENV];
    if (finishRun(runDir, gateSettings())) {
      process.exitCode = 1;
      throw new BaselineGateFailure();
    }
  };
}

/** Thrown by the teardown so that vitest fails the run; the report is already printed. */
class BaselineGateFailure extends Error {
  constructor() {
    super('request-budget: the per-route baseline gate failed (see the report above)');
    this.name = 'BaselineGateFailure';
    this.stack = `${this.name}: ${this.message}`;
  }
}
