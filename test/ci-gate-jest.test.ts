/**
 * The jest preset, without jest: jest is not installed in this repository, so the sample's jest
 * suite (test/ci-gate/jest, ready for jest 30) runs under test/support/jest-like-runtime.cjs,
 * which loads modules the way jest does — a vm context and a module registry of its own per test
 * file, out of reach of Node's require hooks — with a subset of jest's globals. What it proves:
 * the preset's setup instruments what such a registry loads (pg loaded before it included), the
 * gate runs in its global teardown, and the two first-try mistakes fail loudly.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgTruth, type PgTruth } from './support/db-truth';
import { repoRoot, requireFromRoot } from './support/paths';
import { gateReport, plain, runNode, type TestRun } from './support/test-run';

const SUITE = path.join(repoRoot, 'test/ci-gate/jest');
const RUNTIME = path.join(repoRoot, 'test/support/jest-like-runtime.cjs');
const COMMITTED = path.join(SUITE, 'request-budget.baseline.json');
const ORDERS_BY_USER = 'SELECT id, total FROM rbcg_orders WHERE user_id = $1 ORDER BY id';

let truth: PgTruth;
let dir: string;

beforeAll(async () => {
  truth = await pgTruth('rb_cigate_jest');
  await requireFromRoot('./test/fixtures/ci-gate/schema.js').ensureSchema();
  dir = mkdtempSync(path.join(tmpdir(), 'rb-cigate-jest-'));
});

afterAll(async () => {
  await truth?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function jestLike(config: string, env: Record<string, string> = {}): Promise<TestRun> {
  return runNode([RUNTIME, config], { cwd: SUITE, env: { CIGATE_DATABASE_URL: truth.url, ...env } });
}

describe("jest with preset '@request-budget/node' (jest-like runtime)", () => {
  it('measures and records both test files of one process exactly; the committed baseline passes', async () => {
    const baseline = path.join(dir, 'check.json');
    copyFileSync(COMMITTED, baseline);
    let run: TestRun | undefined;
    const server = await truth.during(async () => {
      run = await jestLike('jest.config.js', { REQUEST_BUDGET_BASELINE: baseline });
    });
    expect(run!.code, run!.output).toBe(0);
    expect(plain(run!.stdout).split('\n').filter((line) => /^(PASS|FAIL) /.test(line))).toEqual([
      'PASS budgets.spec.js > budgets GET /users-with-orders stays at 2 queries, whatever the number of users',
      'PASS budgets.spec.js > budgets orderTotal runs one query',
      'PASS routes.spec.js > GET /users-with-orders lists every user with their orders',
      'PASS routes.spec.js > GET /users/:id returns the user and their number of orders',
      'PASS routes.spec.js > GET /users/:id answers 404 for an unknown user (the app object, as supertest serves it)',
    ]);
    expect(server.statements).toBe(2 + 1 + 2 + 3 + 1);
    expect(gateReport(run!.output)).toBe(
      `## request-budget: per-route baseline\n\n**Passed**: 0 regressions, 0 improvements, 0 new entries (5 routes and tests observed; baseline \`${baseline}\`, check mode).`,
    );
  });

  it('fails the run on an N+1 with the table, from the global teardown', async () => {
    const baseline = path.join(dir, 'nplusone.json');
    copyFileSync(COMMITTED, baseline);
    const run = await jestLike('jest.config.js', { REQUEST_BUDGET_BASELINE: baseline, CIGATE_N_PLUS_ONE: '1', JEST_LIKE_FILTER: 'routes' });
    expect(run.code).toBe(1);
    const list = 'routes.spec.js > GET /users-with-orders lists every user with their orders';
    expect(gateReport(run.output)).toContain(
      [
        '| route | test | figure | before → after | statement |',
        '| --- | --- | --- | --- | --- |',
        `| GET /users-with-orders | ${list} | queries | 2 → 21 | \`${ORDERS_BY_USER}\` |`,
        `| GET /users-with-orders | ${list} | repeated statement | — → 20 | \`${ORDERS_BY_USER}\` |`,
      ].join('\n'),
    );
    expect(plain(run.stderr)).toContain('globalTeardown failed: request-budget: the per-route baseline gate failed (see the report above)');
  });

  it('instruments a driver a setupFiles entry loaded before the preset', async () => {
    const baseline = path.join(dir, 'early.json');
    copyFileSync(COMMITTED, baseline);
    const run = await jestLike('jest.config.js', { REQUEST_BUDGET_BASELINE: baseline, CIGATE_EARLY_DRIVER: '1', JEST_LIKE_FILTER: 'budgets' });
    expect(run.code, run.output).toBe(0);
    expect(plain(run.stdout)).toContain('PASS budgets.spec.js > budgets GET /users-with-orders stays at 2 queries, whatever the number of users');
  });

  it('fails loudly, naming the preset, when start() is in a setup file or --require is in NODE_OPTIONS', async () => {
    const inSetup = await jestLike('jest.start-in-setup.config.js');
    expect(inSetup.code).toBe(1);
    expect(plain(inSetup.stdout)).toContain(
      'Error: measureCost: inside jest, request-budget needs its jest setup: jest loads modules through its own registry, where the instrumentations never see pg, express or node:http, ' +
        "and every query would count as 0. Use `preset: '@request-budget/node'` in the jest configuration (or add '@request-budget/node/jest' to setupFilesAfterEnv) instead of calling start() in a setup file.",
    );
    const preloaded = await jestLike('jest.require.config.js', { NODE_OPTIONS: '--require @request-budget/node/register', OTEL_TRACES_EXPORTER: 'none' });
    expect(preloaded.code).toBe(1);
    expect(plain(preloaded.stdout)).toContain(
      'Error: measureCost: request-budget is not running in this jest test file. NODE_OPTIONS has --require @request-budget/node/register, but jest loads test files and their modules ' +
        "through its own module registry, out of reach of --require. Add the preset to the jest configuration: `preset: '@request-budget/node'` (or `setupFilesAfterEnv: ['@request-budget/node/jest']`).",
    );
  });
});
