/**
 * The CI gate as a project uses it: the sample service's vitest suite (test/ci-gate/vitest, an
 * express + PostgreSQL service tested over HTTP and directly) runs as a child process with
 * request-budget's setup file and the baseline gate's global setup, against the real database.
 * Every figure of the baseline is held against pg_stat_statements; the gate's table, exit status
 * and the baseline file after each run are asserted exactly.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgTruth, type PgTruth } from './support/db-truth';
import { repoRoot, requireFromRoot } from './support/paths';
import { gateReport, plain, runNode, type TestRun } from './support/test-run';

const ROLE = 'rb_cigate';
const SUITE = path.join(repoRoot, 'test/ci-gate/vitest');
const VITEST = path.join(repoRoot, 'node_modules/vitest/vitest.mjs');
/** The sample's baseline, committed beside its suite as a project commits its own. */
const COMMITTED = path.join(SUITE, 'request-budget.baseline.json');
const ORDERS_BY_USER = 'SELECT id, total FROM rbcg_orders WHERE user_id = $1 ORDER BY id';

const T = {
  list: 'routes.spec.ts > GET /users-with-orders > lists every user with their orders',
  user: 'routes.spec.ts > GET /users/:id > returns the user and their number of orders',
  missing: 'routes.spec.ts > GET /users/:id > answers 404 for an unknown user (supertest)',
  budget: 'budgets.spec.ts > budgets > GET /users-with-orders stays at 2 queries, whatever the number of users',
  total: 'budgets.spec.ts > budgets > orderTotal runs one query',
};

const LIST_FIGURES = {
  queries: 2,
  repeated: 1,
  rows: 60,
  untimedHttpCalls: 0,
  statements: {
    'SELECT id, name FROM rbcg_users ORDER BY id': 1,
    'SELECT user_id, id, total FROM rbcg_orders WHERE user_id = ANY($1::int[]) ORDER BY id': 1,
  },
};
const USER_FIGURES = {
  queries: 3,
  repeated: 1,
  rows: 3,
  untimedHttpCalls: 0,
  statements: {
    'SELECT count(*)::int AS orders FROM rbcg_orders WHERE user_id = $1': 1,
    'SELECT id, name FROM rbcg_users WHERE id = $1': 1,
    'SELECT now() AS seen_at': 1,
  },
};
const EXPECTED_BASELINE = {
  version: 1,
  routes: {
    'GET /users-with-orders': { [T.budget]: LIST_FIGURES, [T.list]: LIST_FIGURES },
    'GET /users/:id': {
      [T.missing]: { queries: 1, repeated: 1, rows: 0, untimedHttpCalls: 0, statements: { 'SELECT id, name FROM rbcg_users WHERE id = $1': 1 } },
      [T.user]: USER_FIGURES,
    },
    'measureCost orderTotal': {
      [T.total]: {
        queries: 1,
        repeated: 1,
        rows: 1,
        untimedHttpCalls: 0,
        statements: { 'SELECT coalesce(sum(total), ?)::int AS total FROM rbcg_orders WHERE user_id = $1': 1 },
      },
    },
  },
};

let truth: PgTruth;
let dir: string;
let baseline: string;

beforeAll(async () => {
  truth = await pgTruth(ROLE);
  await requireFromRoot('./test/fixtures/ci-gate/schema.js').ensureSchema();
  dir = mkdtempSync(path.join(tmpdir(), 'rb-cigate-'));
  baseline = path.join(dir, 'baseline.json');
});

afterAll(async () => {
  await truth?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** `vitest run [args]` of the sample suite, with the gate's settings and the service's switches. */
function vitest(env: Record<string, string>, ...args: string[]): Promise<TestRun> {
  return runNode([VITEST, 'run', ...args], {
    cwd: SUITE,
    env: { REQUEST_BUDGET_BASELINE: baseline, CIGATE_DATABASE_URL: truth.url, ...env },
  });
}

const readBaseline = () => JSON.parse(readFileSync(baseline, 'utf8')) as unknown;

describe('the per-route baseline gate under vitest', () => {
  it('records every route per test in update mode (threads): the committed baseline, each figure what PostgreSQL ran', async () => {
    let run: TestRun | undefined;
    const server = await truth.during(async () => {
      run = await vitest({ REQUEST_BUDGET_BASELINE_UPDATE: '1' }, '--pool=threads');
    });
    expect(run!.code, run!.output).toBe(0);
    expect(readBaseline()).toEqual(EXPECTED_BASELINE);
    // Written sorted and stable: byte for byte the sample's committed baseline.
    expect(readFileSync(baseline, 'utf8')).toBe(`${JSON.stringify(EXPECTED_BASELINE, null, 2)}\n`);
    expect(readFileSync(baseline, 'utf8')).toBe(readFileSync(COMMITTED, 'utf8'));
    // One request per route per test: the server ran exactly the queries recorded.
    expect(server.statements).toBe(2 + 2 + 3 + 1 + 1);
    expect(server.byStatement.get('SELECT now() AS seen_at')).toEqual({ calls: 1, rows: 1 });
    expect(gateReport(run!.output).split('\n').slice(0, 3)).toEqual([
      '## request-budget: per-route baseline',
      '',
      `**Passed**: 0 regressions, 0 improvements, 5 new entries (5 routes and tests observed; baseline \`${baseline}\`, tighten mode, baseline created).`,
    ]);
  });

  it('passes an unchanged service in check mode (forks), leaving the baseline as it was', async () => {
    copyFileSync(COMMITTED, baseline);
    const before = readFileSync(baseline, 'utf8');
    const run = await vitest({}, '--pool=forks');
    expect(run.code, run.output).toBe(0);
    expect(readFileSync(baseline, 'utf8')).toBe(before);
    expect(gateReport(run.output)).toBe(
      `## request-budget: per-route baseline\n\n**Passed**: 0 regressions, 0 improvements, 0 new entries (5 routes and tests observed; baseline \`${baseline}\`, check mode).`,
    );
  });

  it('fails on an N+1 added to the service, with the table, the JUnit report, and the baseline untouched', async () => {
    const before = readFileSync(baseline, 'utf8');
    const junit = path.join(dir, 'report.xml');
    const markdown = path.join(dir, 'report.md');
    let run: TestRun | undefined;
    const server = await truth.during(async () => {
      // The functional tests only: they assert no cost, and pass; the gate alone fails the run.
      run = await vitest({ CIGATE_N_PLUS_ONE: '1', REQUEST_BUDGET_REPORT_JUNIT: junit, REQUEST_BUDGET_REPORT_MARKDOWN: markdown }, '--pool=threads', 'routes');
    });
    expect(run!.code).toBe(1);
    expect(plain(run!.output)).toMatch(/Tests\s+3 passed \(3\)/);
    expect(server.byStatement.get(ORDERS_BY_USER)).toEqual({ calls: 20, rows: 40 });
    expect(server.statements).toBe(21 + 3 + 1);
    const report = [
      '## request-budget: per-route baseline',
      '',
      `**Failed**: 2 regressions on 1 route, 0 improvements, 0 new entries (3 routes and tests observed; baseline \`${baseline}\`, check mode).`,
      '',
      '### Regressions',
      '',
      '| route | test | figure | before → after | statement |',
      '| --- | --- | --- | --- | --- |',
      `| GET /users-with-orders | ${T.list} | queries | 2 → 21 | \`${ORDERS_BY_USER}\` |`,
      `| GET /users-with-orders | ${T.list} | repeated statement | — → 20 | \`${ORDERS_BY_USER}\` |`,
      '',
      '### In the baseline, not exercised by this run',
      '',
      `- GET /users-with-orders — ${T.budget}`,
      `- measureCost orderTotal — ${T.total}`,
    ].join('\n');
    expect(gateReport(run!.output)).toBe(report);
    expect(readFileSync(markdown, 'utf8')).toBe(`${report}\n`);
    expect(readFileSync(baseline, 'utf8')).toBe(before);
    const xml = readFileSync(junit, 'utf8');
    expect(xml).toContain('<testsuites name="request-budget" tests="3" failures="1">');
    expect(xml).toContain(
      `<testcase classname="GET /users-with-orders" name="${T.list.replace(/>/g, '&gt;')}">\n      <failure message="queries 2 → 21; repeated statement — → 20" type="request-budget">`,
    );
  });

  it('tightens the baseline when a query is removed (update mode), and never loosens it after', async () => {
    const lean = await vitest({ CIGATE_LEAN: '1', REQUEST_BUDGET_BASELINE_UPDATE: '1' }, '--pool=forks');
    expect(lean.code, lean.output).toBe(0);
    expect(gateReport(lean.output)).toBe(
      [
        '## request-budget: per-route baseline',
        '',
        `**Passed**: 0 regressions, 2 improvements, 0 new entries (5 routes and tests observed; baseline \`${baseline}\`, tighten mode, baseline updated).`,
        '',
        '### Cheaper (the baseline was tightened)',
        '',
        '| route | test | figure | before → after | statement |',
        '| --- | --- | --- | --- | --- |',
        `| GET /users/:id | ${T.user} | queries | 3 → 2 |  |`,
        `| GET /users/:id | ${T.user} | rows | 3 → 2 |  |`,
      ].join('\n'),
    );
    const tightened = {
      ...EXPECTED_BASELINE,
      routes: {
        ...EXPECTED_BASELINE.routes,
        'GET /users/:id': {
          ...EXPECTED_BASELINE.routes['GET /users/:id'],
          [T.user]: {
            queries: 2,
            repeated: 1,
            rows: 2,
            untimedHttpCalls: 0,
            statements: { 'SELECT count(*)::int AS orders FROM rbcg_orders WHERE user_id = $1': 1, 'SELECT id, name FROM rbcg_users WHERE id = $1': 1 },
          },
        },
      },
    };
    expect(readBaseline()).toEqual(tightened);

    // The query comes back: even in update mode, the baseline does not give the gain back.
    const back = await vitest({ REQUEST_BUDGET_BASELINE_UPDATE: '1' }, 'routes');
    expect(back.code).toBe(1);
    expect(gateReport(back.output)).toContain(
      [
        '| route | test | figure | before → after | statement |',
        '| --- | --- | --- | --- | --- |',
        `| GET /users/:id | ${T.user} | queries | 2 → 3 | \`SELECT now() AS seen_at\` |`,
        `| GET /users/:id | ${T.user} | rows | 2 → 3 |  |`,
      ].join('\n'),
    );
    expect(readBaseline()).toEqual(tightened);
  });
});
