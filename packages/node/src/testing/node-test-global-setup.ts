/**
 * node:test `--test-global-setup=node_modules/@request-budget/node/dist/testing/node-test-global-setup.js`
 * (Node 24; node resolves this option as a path from the working directory, never as a package
 * name): the per-route baseline gate. `npx request-budget run -- node --test …` does the same
 * around any test command. Gives the test processes a run directory to record into; once every
 * test file has run, compares what they recorded with the committed baseline, prints the report
 * and fails the run on a regression.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finishRun } from './gate';
import { gateSettings, RUN_DIR_ENV } from './settings';

export function globalSetup(): void {
  process.env[RUN_DIR_ENV] = mkdtempSync(join(tmpdir(), 'request-budget-run-'));
}

export function globalTeardown(): void {
  const runDir = process.env[RUN_DIR_ENV];
  if (runDir === undefined || runDir === '') return;
  delete process.env[RUN_DIR_ENV];
  if (finishRun(runDir, gateSettings())) process.exitCode = 1;
}
