/**
 * jest `setupFilesAfterEnv: ['@request-budget/node/jest']` (the preset `@request-budget/node`
 * adds it): runs in every test file, inside jest's sandbox, where the test code runs. Starts
 * request-budget there, applies the instrumentations to what jest's module registry loads (see
 * jest-patch.ts), adds `toBeWithinBudget`, records each request for the baseline gate when the
 * preset's global setup runs, and undoes it all when the test file ends.
 */
import { activeInstrumentations, shutdown } from '../sdk';
import { budgetMatchers } from './matchers';
import { patchLoadedModules, unpatchAll, type ModuleRegistry } from './jest-patch';
import { beforeEachMeasurement, markJestSetup } from './measure-hooks';
import { BaselineRecorder } from './recorder';
import { startForTests } from './runner-start';
import { RUN_DIR_ENV } from './settings';

interface JestGlobals {
  expect?: { extend(matchers: object): void; getState(): { currentTestName?: string; testPath?: string } };
  beforeAll?(fn: () => unknown): void;
  afterAll?(fn: () => unknown): void;
}

// Not named `jest`: jest's module wrapper declares that name in every module it loads.
const runner = globalThis as JestGlobals;
// This module's require is jest's: its cache is the registry the test file's modules live in.
const registry = require as unknown as ModuleRegistry;

// Marked first: start()'s library check then knows that what jest loaded already gets patched below.
markJestSetup();
startForTests();
const instrumentations = activeInstrumentations();
const patchNow = () => {
  patchLoadedModules(registry, instrumentations);
};
// What setupFiles loaded already; what the test file imports, before its first test; what a
// test requires lazily, before each measurement.
patchNow();
runner.beforeAll?.(patchNow);
const removeHook = beforeEachMeasurement(patchNow);
runner.expect?.extend(budgetMatchers);

const runDir = process.env[RUN_DIR_ENV];
const recorder =
  runDir !== undefined && runDir !== '' && runner.expect !== undefined
    ? new BaselineRecorder({
        runDir,
        runningTest: () => {
          const state = runner.expect!.getState();
          return { file: state.testPath, name: state.currentTestName };
        },
      })
    : undefined;
recorder?.start();

runner.afterAll?.(async () => {
  recorder?.stop();
  removeHook();
  // node:http and the diagnostics channels are shared by the worker's next test file.
  unpatchAll(instrumentations);
  await shutdown();
});
