/**
 * The CI gate under node:test: the sample service's node:test suite (test/ci-gate/node-test)
 * runs with `--import @request-budget/node/node-test`, the gate around it either through the
 * CLI (`request-budget run … -- node --test …`) or node's `--test-global-setup`, against the
 * real PostgreSQL; pg_stat_statements confirms the figures.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgTruth, type PgTruth } from './support/db-truth';
import { repoRoot, requireFromRoot } from './support/paths';
import { gateReport, plain, runNode, type TestRun } from './support/test-run';

const SUITE = path.join(repoRoot, 'test/ci-gate/node-test');
// As a project runs them: the CLI through npm's bin link, the global setup through node_modules.
const CLI = path.join(repoRoot, 'node_modules/.bin/request-budget');
const GLOBAL_SETUP = path.relative(SUITE, path.join(repoRoot, 'node_modules/@request-budget/node/dist/testing/node-test-global-setup.js'));
const COMMITTED = path.join(SUITE, 'request-budget.baseline.json');
const ORDERS_BY_USER = 'SELECT id, total FROM rbcg_orders WHERE user_id = $1 ORDER BY id';
const LIST = 'routes.spec.mjs > GET /users-with-orders > lists every user with their orders';

let truth: PgTruth;
let dir: string;

beforeAll(async () => {
  truth = await pgTruth('rb_cigate_nt');
  await requireFromRoot('./test/fixtures/ci-gate/schema.js').ensureSchema();
  dir = mkdtempSync(path.join(tmpdir(), 'rb-cigate-nt-'));
});

afterAll(async () => {
  await truth?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

const nodeTest = ['node', '--test', '--import', '@request-budget/node/node-test'];

describe('the per-route baseline gate under node:test', () => {
  it('records the baseline through the CLI (`request-budget run --update -- node --test …`), as committed', async () => {
    const baseline = path.join(dir, 'baseline.json');
    let run: TestRun | undefined;
    const server = await truth.during(async () => {
      run = await runNode([CLI, 'run', '--baseline', baseline, '--update', '--', ...nodeTest, 'routes.spec.mjs', 'budgets.spec.mjs'], {
        cwd: SUITE,
        env: { CIGATE_DATABASE_URL: truth.url },
      });
    });
    expect(run!.code, run!.output).toBe(0);
    expect(readFileSync(baseline, 'utf8')).toBe(readFileSync(COMMITTED, 'utf8'));
    expect(server.statements).toBe(2 + 3 + 2 + 1);
    const committed = JSON.parse(readFileSync(COMMITTED, 'utf8')) as { routes: Record<string, Record<string, { queries: number }>> };
    expect(
      Object.entries(committed.routes).flatMap(([route, tests]) => Object.entries(tests).map(([test, figures]) => [route, test, figures.queries])),
    ).toEqual([
      ['GET /users-with-orders', 'budgets.spec.mjs > budgets > GET /users-with-orders stays at 2 queries', 2],
      ['GET /users-with-orders', LIST, 2],
      ['GET /users/:id', 'routes.spec.mjs > GET /users/:id > returns the user and their number of orders', 3],
      ['measureCost orderTotal', 'budgets.spec.mjs > budgets > orderTotal runs one query', 1],
    ]);
  });

  it('fails an N+1 through --test-global-setup, with the table; assertCost fails the test that budgets it', async () => {
    const baseline = path.join(dir, 'check.json');
    copyFileSync(COMMITTED, baseline);
    const run = await runNode(
      ['--test', '--import', '@request-budget/node/node-test', `--test-global-setup=${GLOBAL_SETUP}`, 'routes.spec.mjs', 'budgets.spec.mjs'],
      {
        cwd: SUITE,
        env: { CIGATE_DATABASE_URL: truth.url, CIGATE_N_PLUS_ONE: '1', REQUEST_BUDGET_BASELINE: baseline },
      },
    );
    expect(run.code).toBe(1);
    // node:test's reporter indents the assertion message.
    const lines = plain(run.output)
      .split('\n')
      .map((line) => line.trim());
    const at = lines.indexOf('AssertionError [ERR_ASSERTION]: cost exceeded the budget {"queries":2,"repeatedQueries":1}:');
    expect(at, run.output).toBeGreaterThanOrEqual(0);
    expect(lines.slice(at + 1, at + 8)).toEqual([
      'db.queries 21>2',
      'db.repeated_count 20>1',
      'statements (21 queries):',
      `20× ${ORDERS_BY_USER}`,
      '1× SELECT id, name FROM rbcg_users ORDER BY id',
      'requests (1):',
      `GET /users-with-orders 200: 21 queries, 20× ${ORDERS_BY_USER}`,
    ]);
    expect(gateReport(run.output)).toBe(
      [
        '## request-budget: per-route baseline',
        '',
        `**Failed**: 4 regressions on 1 route, 0 improvements, 0 new entries (4 routes and tests observed; baseline \`${baseline}\`, check mode).`,
        '',
        '### Regressions',
        '',
        '| route | test | figure | before → after | statement |',
        '| --- | --- | --- | --- | --- |',
        `| GET /users-with-orders | budgets.spec.mjs > budgets > GET /users-with-orders stays at 2 queries | queries | 2 → 21 | \`${ORDERS_BY_USER}\` |`,
        `| GET /users-with-orders | budgets.spec.mjs > budgets > GET /users-with-orders stays at 2 queries | repeated statement | — → 20 | \`${ORDERS_BY_USER}\` |`,
        `| GET /users-with-orders | ${LIST} | queries | 2 → 21 | \`${ORDERS_BY_USER}\` |`,
        `| GET /users-with-orders | ${LIST} | repeated statement | — → 20 | \`${ORDERS_BY_USER}\` |`,
      ].join('\n'),
    );
    expect(readFileSync(baseline, 'utf8')).toBe(readFileSync(COMMITTED, 'utf8'));
  });
});
