/**
 * jest `globalSetup: '@request-budget/node/jest/global-setup'` (in the preset): gives the test
 * workers a run directory to record each request's cost into. Runs in jest's parent process,
 * before the workers start: they inherit the variable.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RUN_DIR_ENV } from './settings';

export = function globalSetup(): void {
  process.env[RUN_DIR_ENV] = mkdtempSync(join(tmpdir(), 'request-budget-run-'));
};
