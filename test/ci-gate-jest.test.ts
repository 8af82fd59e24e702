/**
 * The jest preset under jest 30 itself: the sample service's jest suite (test/ci-gate/jest, whose
 * jest.config.js is `{ preset: '@request-budget/node' }`) runs as a child process — `jest
 * --config jest.config.js --runInBand`, as CI runs it — against the real PostgreSQL. jest loads
 * each test file and its modules through its own module registry in a vm context of its own,
 * out of reach of Node's require hooks: what is proven here is that the preset's setup
 * instruments what that registry loads (pg loaded before it included), that the gate runs in
 * its global teardown, and that the two first-try mistakes fail loudly. pg_stat_statements
 * confirms the counts.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgTruth, type PgTruth } from './support/db-truth';
import { repoRoot, requireFromRoot } from './support/paths';
import { gateReport, plain, runNode, type TestRun } from './support/test-run';

const SUITE = path.join(repoRoot, 'test/ci-gate/jest');
const JEST = path.join(repoRoot, 'node_modules/jest/bin/jest.js');
const COMMITTED = path.join(SUITE, 'request-budget.baseline.json');
const ORDERS_BY_USER = 'SELECT id, total FROM rbcg_orders WHERE user_id = $1 ORDER BY id';

const T = {
  budget: 'budgets.spec.js > budgets GET /users-with-orders stays at 2 queries, whatever the number of users',
  total: 'budgets.spec.js > budgets orderTotal runs one query',
  list: 'routes.spec.js > GET /users-with-orders lists every user with their orders',
  user: 'routes.spec.js > GET /users/:id returns the user and their number of orders',
  missing: 'routes.spec.js > GET /users/:id answers 404 for an unknown user (supertest)',
};
const GATE_FAILED = 'request-budget: the per-route baseline gate failed (see the report above)';

let truth: PgTruth;
let dir: string;
let runs = 0;

beforeAll(async () => {
  truth = await pgTruth('rb_cigate_jest');
  await requireFromRoot('./test/fixtures/ci-gate/schema.js').ensureSchema();
  dir = mkdtempSync(path.join(tmpdir(), 'rb-cigate-jest-'));
});

afterAll(async () => {
  await truth?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

interface JestRun extends TestRun {
  /**
   * `file > full test name: status`, for every test jest ran, files in name order. Undefined
   * when the global teardown failed: jest writes its JSON report after the global teardown.
   */
  readonly tests: string[] | undefined;
  /** The first line of each failed test's message, by test. */
  readonly failures: Record<string, string[]>;
}

interface JestResults {
  testResults: { name: string; assertionResults: { fullName: string; status: string; failureMessages: string[] }[] }[];
}

/** `jest --config <config> --runInBand [patterns]` in the sample suite, its results read from jest's JSON report. */
async function jest(config: string, options: { env?: Record<string, string>; patterns?: string[]; args?: string[] } = {}): Promise<JestRun> {
  const results = path.join(dir, `results-${++runs}.json`);
  const run = await runNode(
    [JEST, '--config', config, ...(options.args ?? ['--runInBand']), '--json', `--outputFile=${results}`, ...(options.patterns ?? [])],
    {
      cwd: SUITE,
      env: { CIGATE_DATABASE_URL: truth.url, ...options.env },
    },
  );
  // jest's note of where the JSON report went comes after the gate's report: not part of it.
  const output = run.output.replace(/^Test results written to: .*\n?/m, '');
  if (!existsSync(results)) return { ...run, output, tests: undefined, failures: {} };
  const report = JSON.parse(readFileSync(results, 'utf8')) as JestResults;
  const tests: string[] = [];
  const failures: Record<string, string[]> = {};
  for (const file of [...report.testResults].sort((a, b) => a.name.localeCompare(b.name))) {
    for (const test of file.assertionResults) {
      const name = `${path.basename(file.name)} > ${test.fullName}`;
      tests.push(`${name}: ${test.status}`);
      if (test.failureMessages.length > 0) failures[name] = test.failureMessages.map((message) => message.split('\n')[0]!);
    }
  }
  return { ...run, output, tests, failures };
}

function baselineCopy(name: string): string {
  const baseline = path.join(dir, name);
  copyFileSync(COMMITTED, baseline);
  return baseline;
}

describe("jest 30 with preset '@request-budget/node'", () => {
  it('measures and records both test files of one process exactly; the committed baseline passes', async () => {
    const baseline = baselineCopy('check.json');
    let run: JestRun | undefined;
    const server = await truth.during(async () => {
      run = await jest('jest.config.js', { env: { REQUEST_BUDGET_BASELINE: baseline } });
    });
    expect(run!.code, run!.output).toBe(0);
    expect(run!.tests).toEqual([`${T.budget}: passed`, `${T.total}: passed`, `${T.list}: passed`, `${T.user}: passed`, `${T.missing}: passed`]);
    // One request per route per test, and orderTotal: what the baseline holds, query for query.
    expect(server.statements).toBe(2 + 1 + 2 + 3 + 1);
    expect(server.byStatement.get('SELECT user_id, id, total FROM rbcg_orders WHERE user_id = ANY($1::int[]) ORDER BY id')).toEqual({ calls: 2, rows: 80 });
    expect(gateReport(run!.output)).toBe(
      `## request-budget: per-route baseline\n\n**Passed**: 0 regressions, 0 improvements, 0 new entries (5 routes and tests observed; baseline \`${baseline}\`, check mode).`,
    );
    expect(readFileSync(baseline, 'utf8')).toBe(readFileSync(COMMITTED, 'utf8'));
  });

  it('fails the run on an N+1 with the table, from the global teardown', async () => {
    const baseline = baselineCopy('nplusone.json');
    let run: JestRun | undefined;
    const server = await truth.during(async () => {
      // The functional tests only: they assert no cost, and pass; the gate alone fails the run.
      run = await jest('jest.config.js', { env: { REQUEST_BUDGET_BASELINE: baseline, CIGATE_N_PLUS_ONE: '1' }, patterns: ['routes'] });
    });
    expect(run!.code).toBe(1);
    expect(plain(run!.stderr)).toMatch(/^Tests: +3 passed, 3 total$/m);
    expect(server.byStatement.get(ORDERS_BY_USER)).toEqual({ calls: 20, rows: 40 });
    expect(server.statements).toBe(21 + 3 + 1);
    expect(gateReport(run!.output)).toBe(
      [
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
        // jest prints the global teardown's error last, and exits 1.
        GATE_FAILED,
      ].join('\n'),
    );
    expect(readFileSync(baseline, 'utf8')).toBe(readFileSync(COMMITTED, 'utf8'));
  });

  it('instruments a driver a setupFiles entry loaded before the preset, and does not call it uninstrumented', async () => {
    const baseline = baselineCopy('early.json');
    let run: JestRun | undefined;
    const server = await truth.during(async () => {
      run = await jest('jest.early-driver.config.js', { env: { REQUEST_BUDGET_BASELINE: baseline }, patterns: ['budgets'] });
    });
    expect(run!.code, run!.output).toBe(0);
    expect(run!.tests).toEqual([`${T.budget}: passed`, `${T.total}: passed`]);
    expect(server.statements).toBe(2 + 1);
    expect(gateReport(run!.output).split('\n')[2]).toBe(
      `**Passed**: 0 regressions, 0 improvements, 0 new entries (2 routes and tests observed; baseline \`${baseline}\`, check mode).`,
    );
    expect(plain(run!.stderr)).not.toContain('was loaded before request-budget started');
  });

  it('works the same with jest’s worker processes', async () => {
    const baseline = baselineCopy('workers.json');
    // An empty cache: with the timings of earlier runs, jest would run these fast files in band.
    const run = await jest('jest.config.js', {
      env: { REQUEST_BUDGET_BASELINE: baseline },
      args: ['--maxWorkers=2', `--cacheDirectory=${path.join(dir, 'jest-cache')}`],
    });
    expect(run.code, run.output).toBe(0);
    expect(run.tests).toEqual([`${T.budget}: passed`, `${T.total}: passed`, `${T.list}: passed`, `${T.user}: passed`, `${T.missing}: passed`]);
    expect(gateReport(run.output)).toBe(
      `## request-budget: per-route baseline\n\n**Passed**: 0 regressions, 0 improvements, 0 new entries (5 routes and tests observed; baseline \`${baseline}\`, check mode).`,
    );
  });

  it('fails loudly, naming the preset, when start() is in a setup file or --require is in NODE_OPTIONS', async () => {
    const inSetup = await jest('jest.start-in-setup.config.js', { patterns: ['budgets'] });
    expect(inSetup.code).toBe(1);
    const setupMissing =
      'Error: measureCost: inside jest, request-budget needs its jest setup: jest loads modules through its own registry, where the instrumentations never see pg, express or node:http, ' +
      "and every query would count as 0. Use `preset: '@request-budget/node'` in the jest configuration (or add '@request-budget/node/jest' to setupFilesAfterEnv) instead of calling start() in a setup file.";
    expect(inSetup.failures).toEqual({ [T.budget]: [setupMissing], [T.total]: [setupMissing] });

    const preloaded = await jest('jest.require.config.js', {
      env: { NODE_OPTIONS: '--require @request-budget/node/register', OTEL_TRACES_EXPORTER: 'none' },
      patterns: ['budgets'],
    });
    expect(preloaded.code).toBe(1);
    const notRunning =
      'Error: measureCost: request-budget is not running in this jest test file. NODE_OPTIONS has --require @request-budget/node/register, but jest loads test files and their modules ' +
      "through its own module registry, out of reach of --require. Add the preset to the jest configuration: `preset: '@request-budget/node'` (or `setupFilesAfterEnv: ['@request-budget/node/jest']`).";
    expect(preloaded.failures).toEqual({ [T.budget]: [notRunning], [T.total]: [notRunning] });
  });
});
