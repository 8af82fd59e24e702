/**
 * The CI gate's explicit update (accept mode) and its refusal to measure a driver loaded before
 * request-budget, on the sample service's vitest suite (see ci-gate.test.ts), against PostgreSQL.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgTruth, type PgTruth } from './support/db-truth';
import { repoRoot, requireFromRoot } from './support/paths';
import { gateReport, plain, runNode, type TestRun } from './support/test-run';

const SUITE = path.join(repoRoot, 'test/ci-gate/vitest');
const VITEST = path.join(repoRoot, 'node_modules/vitest/vitest.mjs');
const COMMITTED = path.join(SUITE, 'request-budget.baseline.json');
const ORDERS_BY_USER = 'SELECT id, total FROM rbcg_orders WHERE user_id = $1 ORDER BY id';
const LIST = 'routes.spec.ts > GET /users-with-orders > lists every user with their orders';

type Baseline = { routes: Record<string, Record<string, { queries: number; repeated: number; statements: Record<string, number> }>> };

let truth: PgTruth;
let dir: string;

beforeAll(async () => {
  truth = await pgTruth('rb_cigate_modes');
  await requireFromRoot('./test/fixtures/ci-gate/schema.js').ensureSchema();
  dir = mkdtempSync(path.join(tmpdir(), 'rb-cigate-modes-'));
});

afterAll(async () => {
  await truth?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function vitest(env: Record<string, string>, ...args: string[]): Promise<TestRun> {
  return runNode([VITEST, 'run', ...args], { cwd: SUITE, env: { CIGATE_DATABASE_URL: truth.url, ...env } });
}

describe('the per-route baseline gate: explicit update and refusals', () => {
  it('takes a regression into the baseline only in accept mode, keeping what the run did not exercise', async () => {
    const baseline = path.join(dir, 'accept.json');
    copyFileSync(COMMITTED, baseline);
    const committed = JSON.parse(readFileSync(COMMITTED, 'utf8')) as Baseline;
    const run = await vitest({ REQUEST_BUDGET_BASELINE: baseline, REQUEST_BUDGET_BASELINE_UPDATE: 'accept', CIGATE_N_PLUS_ONE: '1' }, 'routes');
    expect(run.code, run.output).toBe(0);
    expect(gateReport(run.output).split('\n').slice(2, 5)).toEqual([
      `**Passed**: 2 regressions on 1 route, 0 improvements, 0 new entries (3 routes and tests observed; baseline \`${baseline}\`, accept mode, baseline updated).`,
      '',
      '### Regressions (accepted into the baseline)',
    ]);
    const accepted = JSON.parse(readFileSync(baseline, 'utf8')) as Baseline;
    expect(accepted.routes['GET /users-with-orders']![LIST]).toMatchObject({
      queries: 21,
      repeated: 20,
      statements: { [ORDERS_BY_USER]: 20, 'SELECT id, name FROM rbcg_users ORDER BY id': 1 },
    });
    expect(accepted.routes['measureCost orderTotal']).toEqual(committed.routes['measureCost orderTotal']);
  });

  it('fails the tests that measure when the driver was loaded before request-budget, naming it and the fix', async () => {
    const baseline = path.join(dir, 'early.json');
    copyFileSync(COMMITTED, baseline);
    const run = await vitest({ REQUEST_BUDGET_BASELINE: baseline }, '--config', 'vitest.early-driver.config.mts', 'budgets');
    expect(run.code).toBe(1);
    const message =
      "measureCost: 'pg-pool' (pg's connection pool) was loaded before request-budget started and is not instrumented (@opentelemetry/instrumentation-pg never patched it), " +
      'so the queries made with it would count as 0 or go to the wrong request. ' +
      "Start request-budget before anything loads them: in vitest, `setupFiles: ['@request-budget/node/vitest']` first in the list; in node:test, `--import @request-budget/node/node-test`; " +
      'otherwise `--require @request-budget/node/register` or start() before the first require.';
    expect(plain(run.output)).toContain(message);
    expect(plain(run.output)).toMatch(/Tests\s+2 failed \(2\)/);
  });
});
