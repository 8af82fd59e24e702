/**
 * Test helpers: measure what a piece of code costs — its own queries and those of every request
 * it sends to the app's server in the same process — and assert it stays within a budget, in the
 * app's own test suite (a CI gate for N+1 regressions). Import from
 * `@request-budget/node/testing`; nothing here is loaded by production code.
 *
 *   import { budgetMatchers, measureCost } from '@request-budget/node/testing';
 *   expect.extend(budgetMatchers);
 *   expect(await measureCost(() => request(app).get('/users/1/orders'))).toBeWithinBudget({ queries: 3 });
 *
 * The test process must run request-budget before the database driver is loaded: vitest
 * `setupFiles: ['@request-budget/node/vitest']`, jest `preset: '@request-budget/node'`,
 * node:test `--import @request-budget/node/node-test`, or start() in a setup file. The per-route
 * baseline gate (see gate.ts) is enabled by the runners' global setups.
 */
export { measureCost } from './testing/measure';
export type { MeasureOptions, MeasuredCost } from './testing/measure';
export type { CostPart } from './testing/cost-part';
export { budgetMatchers, budgetViolations } from './testing/matchers';
export type { BudgetLimits, BudgetMatchers } from './testing/matchers';
export { assertCost, assertWithinBudget } from './testing/node-test-assert';
export { BaselineRecorder, testKey } from './testing/recorder';
export type { RecorderOptions, RunningTest } from './testing/recorder';
export { compareBaseline, nextBaseline, mergeTables } from './testing/baseline';
export type { BaselineMode, Comparison, Figures, Finding, RouteTable } from './testing/baseline';
export { readBaselineFile, writeBaselineFile, formatBaseline, parseBaseline, BaselineFileError } from './testing/baseline-file';
export { finishRun, runGate, readObservations } from './testing/gate';
export type { GateResult } from './testing/gate-result';
export { gateSettings } from './testing/settings';
export type { GateSettings } from './testing/settings';
export { markdownReport } from './testing/report-markdown';
export { junitReport } from './testing/report-junit';
