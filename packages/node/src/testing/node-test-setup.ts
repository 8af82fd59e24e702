/**
 * node:test: `node --test --import @request-budget/node/node-test` (or `--require`). Starts
 * request-budget in each test process before the test file loads its database driver, and —
 * when the baseline gate runs around the tests (`npx request-budget run -- node --test …`, or
 * node-test-global-setup.js given to `--test-global-setup`) — records each request's cost per
 * route and test for it.
 * Assertions: `assertCost` / `assertWithinBudget` from `@request-budget/node/testing`.
 */
import { after, beforeEach } from 'node:test';
import { BaselineRecorder, type RunningTest } from './recorder';
import { startForTests } from './runner-start';
import { RUN_DIR_ENV } from './settings';

startForTests();

const runDir = process.env[RUN_DIR_ENV];
if (runDir !== undefined && runDir !== '') {
  // node:test has no "current test" to ask: every test announces itself as it starts.
  let running: RunningTest | undefined = { file: process.argv[1] };
  beforeEach((context) => {
    const named = context as { fullName?: string; name: string };
    running = { file: process.argv[1], name: named.fullName ?? named.name };
  });
  const recorder = new BaselineRecorder({ runDir, runningTest: () => running });
  recorder.start();
  after(() => recorder.flush());
}
