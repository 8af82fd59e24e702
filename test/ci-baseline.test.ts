/**
 * The per-route baseline's rules on plain data: what fails, what tightens, what never loosens;
 * the file's format and validation; the reports; the budget file written from and checked
 * against the same figures; the CLI's lint and budgets commands.
 */
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareBaseline, nextBaseline, type Figures, type RouteTable } from '../packages/node/src/testing/baseline';
import { formatBaseline, parseBaseline } from '../packages/node/src/testing/baseline-file';
import { checkAgainstBudgets, writeBudgets } from '../packages/node/src/testing/budget-sync';
import { runGate } from '../packages/node/src/testing/gate';
import { junitReport } from '../packages/node/src/testing/report-junit';
import { gateSettings, parseTolerance } from '../packages/node/src/testing/settings';
import { satisfiesAny } from '../packages/node/src/testing/version-range';
import { main } from '../packages/node/src/cli';
import { repoRoot } from './support/paths';
import { runNode } from './support/test-run';

const fig = (queries: number, statements: Record<string, number>, extra: Partial<Figures> = {}): Figures => ({
  queries,
  repeated: Math.max(0, ...Object.values(statements)),
  rows: queries,
  untimedHttpCalls: 0,
  statements,
  ...extra,
});
const table = (figures: Figures, route = 'GET /orders', test = 'orders.test.ts > lists'): RouteTable => ({ [route]: { [test]: figures } });
const OPTIONS = { rowsTolerance: 0.1 };

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rb-ci-baseline-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('compareBaseline', () => {
  it('fails more queries, naming the statements that grew, and a statement newly repeated', () => {
    const before = table(fig(2, { 'SELECT a': 1, 'SELECT b': 1 }));
    const after = table(fig(12, { 'SELECT a': 1, 'SELECT b': 11 }));
    expect(compareBaseline(before, after, OPTIONS).regressions).toEqual([
      { route: 'GET /orders', test: 'orders.test.ts > lists', figure: 'queries', before: 2, after: 12, statement: 'SELECT b' },
      { route: 'GET /orders', test: 'orders.test.ts > lists', figure: 'repeated statement', before: 1, after: 11, statement: 'SELECT b' },
      { route: 'GET /orders', test: 'orders.test.ts > lists', figure: 'rows', before: 2, after: 12 },
    ]);
  });

  it('allows rows to grow within the tolerance, and fails beyond it', () => {
    const before = table(fig(1, { 'SELECT a': 1 }, { rows: 100 }));
    expect(compareBaseline(before, table(fig(1, { 'SELECT a': 1 }, { rows: 110 })), OPTIONS).regressions).toEqual([]);
    expect(compareBaseline(before, table(fig(1, { 'SELECT a': 1 }, { rows: 111 })), OPTIONS).regressions).toEqual([
      { route: 'GET /orders', test: 'orders.test.ts > lists', figure: 'rows', before: 100, after: 111 },
    ]);
    expect(compareBaseline(before, table(fig(1, { 'SELECT a': 1 }, { rows: 111 })), { rowsTolerance: 0.2 }).regressions).toEqual([]);
  });

  it('fails a new untimed HTTP call', () => {
    const comparison = compareBaseline(table(fig(1, { 'SELECT a': 1 })), table(fig(1, { 'SELECT a': 1 }, { untimedHttpCalls: 1 })), OPTIONS);
    expect(comparison.regressions).toEqual([{ route: 'GET /orders', test: 'orders.test.ts > lists', figure: 'untimed HTTP calls', before: 0, after: 1 }]);
  });

  it('reports improvements, new entries and entries the run did not exercise', () => {
    const before: RouteTable = { 'GET /a': { t1: fig(3, { 'SELECT x': 3 }) }, 'GET /gone': { t2: fig(1, { 'SELECT y': 1 }) } };
    const after: RouteTable = { 'GET /a': { t1: fig(1, { 'SELECT x': 1 }) }, 'GET /new': { t3: fig(1, { 'SELECT z': 1 }) } };
    const comparison = compareBaseline(before, after, OPTIONS);
    expect(comparison.regressions).toEqual([]);
    expect(comparison.improvements).toEqual([
      { route: 'GET /a', test: 't1', figure: 'queries', before: 3, after: 1 },
      { route: 'GET /a', test: 't1', figure: 'repeated statement', before: 3, after: 1, statement: 'SELECT x' },
      { route: 'GET /a', test: 't1', figure: 'rows', before: 3, after: 1 },
    ]);
    expect(comparison.added).toEqual([{ route: 'GET /new', test: 't3', figures: fig(1, { 'SELECT z': 1 }) }]);
    expect(comparison.unexercised).toEqual([{ route: 'GET /gone', test: 't2' }]);
  });
});

describe('nextBaseline: the ratchet', () => {
  const before = table(fig(3, { 'SELECT a': 1, 'SELECT b': 2 }, { rows: 10, untimedHttpCalls: 1 }));

  it('tightens every figure that went down, and raises none that went up', () => {
    const after = table(fig(5, { 'SELECT a': 1, 'SELECT c': 4 }, { rows: 4, untimedHttpCalls: 0 }));
    expect(nextBaseline(before, after, 'tighten')).toEqual(table({ queries: 3, repeated: 1, rows: 4, untimedHttpCalls: 0, statements: { 'SELECT a': 1 } }));
  });

  it('keeps a statement that took another’s place, once, with no more queries', () => {
    const after = table(fig(3, { 'SELECT a': 1, 'SELECT b': 1, 'SELECT d': 1 }, { rows: 10, untimedHttpCalls: 1 }));
    expect(nextBaseline(before, after, 'tighten')['GET /orders']!['orders.test.ts > lists']!.statements).toEqual({
      'SELECT a': 1,
      'SELECT b': 1,
      'SELECT d': 1,
    });
  });

  it('writes nothing in check mode; takes everything exercised in accept mode', () => {
    const after = table(fig(9, { 'SELECT z': 9 }));
    expect(nextBaseline(before, after, 'check')).toBe(before);
    expect(nextBaseline({ ...before, 'GET /kept': { t: fig(1, {}) } }, after, 'accept')).toEqual({ ...after, 'GET /kept': { t: fig(1, {}) } });
  });
});

describe('the baseline file', () => {
  it('is written sorted, with a trailing newline, whatever the insertion order', () => {
    const a: RouteTable = { 'GET /b': { z: fig(1, { 'SELECT 2': 1, 'SELECT 1': 1 }) }, 'GET /a': { y: fig(1, {}), x: fig(1, {}) } };
    const text = formatBaseline(a);
    expect(text.endsWith('}\n')).toBe(true);
    expect(Object.keys(JSON.parse(text).routes)).toEqual(['GET /a', 'GET /b']);
    expect(Object.keys(JSON.parse(text).routes['GET /a'])).toEqual(['x', 'y']);
    expect(text.indexOf('SELECT 1')).toBeLessThan(text.indexOf('SELECT 2'));
    expect(parseBaseline(text, 'b.json')).toEqual(a);
  });

  it('reports every problem of an invalid file at once', () => {
    const text = JSON.stringify({
      version: 2,
      extra: 1,
      routes: { 'GET /a': { t: { queries: -1, repeated: 1, rows: 'x', untimedHttpCalls: 0, statements: { s: 1.5 }, other: 1 } } },
    });
    expect(() => parseBaseline(text, 'b.json')).toThrow(
      [
        'invalid baseline file b.json:',
        '  version: expected 1, got 2',
        '  extra: unknown key (expected version, routes)',
        '  routes["GET /a"]["t"].queries: expected a non-negative integer, got -1',
        '  routes["GET /a"]["t"].rows: expected a non-negative integer, got "x"',
        '  routes["GET /a"]["t"].other: unknown key (expected queries, repeated, rows, untimedHttpCalls, statements)',
        '  routes["GET /a"]["t"].statements["s"]: expected a non-negative integer, got 1.5',
      ].join('\n'),
    );
  });
});

describe('settings', () => {
  it('reads the environment', () => {
    const settings = gateSettings(
      { REQUEST_BUDGET_BASELINE: 'ci/base.json', REQUEST_BUDGET_BASELINE_UPDATE: 'accept', REQUEST_BUDGET_ROWS_TOLERANCE: '25%' },
      '/repo',
    );
    expect(settings).toMatchObject({ baselinePath: '/repo/ci/base.json', mode: 'accept', rowsTolerance: 0.25, markdownPath: undefined });
    expect(gateSettings({}, '/repo')).toMatchObject({ baselinePath: '/repo/request-budget.baseline.json', mode: 'check', rowsTolerance: 0.1 });
    expect(gateSettings({ REQUEST_BUDGET_BASELINE_UPDATE: '1' }, '/repo').mode).toBe('tighten');
    expect(parseTolerance('0.05')).toBe(0.05);
  });
});

describe('reports', () => {
  it('escapes table cells and XML, and fails a new entry only in check mode', () => {
    const observed = table(fig(1, { 'SELECT a | b': 1 }), 'GET /<x>', 'test "quoted" & <tagged>');
    const settings = { ...gateSettings({}, dir), baselinePath: path.join(dir, 'none.json') };
    const { result, markdown } = runGate(observed, settings);
    expect(result.failed).toBe(true);
    expect(markdown).toContain('| GET /<x> | test "quoted" & <tagged> | 1 | 1 | 1 | 0 |');
    expect(junitReport(result)).toContain(
      '<testcase classname="GET /&lt;x&gt;" name="test &quot;quoted&quot; &amp; &lt;tagged&gt;">\n      <failure message="not in the baseline" type="request-budget">Record it with REQUEST_BUDGET_BASELINE_UPDATE=1.</failure>',
    );
    const update = runGate(observed, { ...settings, mode: 'tighten' });
    expect(update.result).toMatchObject({ failed: false, baselineWrite: 'created' });
    expect(junitReport(update.result)).toContain('<testcase classname="GET /&lt;x&gt;" name="test &quot;quoted&quot; &amp; &lt;tagged&gt;"/>');
  });
});

describe('one per-route budget for CI and production', () => {
  const observed: RouteTable = {
    'GET /users/:id': { a: fig(3, { 'SELECT u': 1, 'SELECT o': 2 }), b: fig(2, { 'SELECT u': 1, 'SELECT o': 1 }) },
    'job email.send': { c: fig(1, { 'SELECT e': 1 }, { untimedHttpCalls: 1 }) },
    'measureCost orderTotal': { d: fig(1, { 'SELECT t': 1 }) },
  };

  it('writes each route’s and job’s limits into the budget file, keeping its other rules and settings', () => {
    const file = path.join(dir, 'budgets.yaml');
    writeFileSync(
      file,
      [
        'version: 1',
        'defaults:',
        '  queries: 50',
        'routes:',
        '  - match: GET /health',
        '    queries: 0',
        '  - match: get /users/:id',
        '    durationMs: 200',
        '    severity: critical',
        '',
      ].join('\n'),
    );
    writeBudgets(observed, file);
    expect(readFileSync(file, 'utf8')).toBe(
      [
        '# request-budget budgets. Route and job limits are written by `request-budget budgets --write` from the CI baseline.',
        'version: 1',
        'defaults:',
        '  queries: 50',
        'routes:',
        '  - match: "GET /health"',
        '    queries: 0',
        '  - match: "get /users/:id"',
        '    queries: 3',
        '    repeatedQueries: 2',
        '    durationMs: 200',
        '    untimedHttpCalls: 0',
        '    severity: "critical"',
        'jobs:',
        '  - match: "email.send"',
        '    queries: 1',
        '    repeatedQueries: 1',
        '    untimedHttpCalls: 1',
        '',
      ].join('\n'),
    );
    expect(checkAgainstBudgets(observed, file)).toEqual([]);
  });

  it('checks the figures against a budget file, naming the rule and the statement', () => {
    const file = path.join(dir, 'tight.yaml');
    writeFileSync(file, ['version: 1', 'routes:', '  - match: GET /users/*', '    queries: 2', '    repeatedQueries: 1', ''].join('\n'));
    expect(checkAgainstBudgets(observed, file)).toEqual([
      { route: 'GET /users/:id', test: 'a', figure: 'db.queries (rule GET /users/*)', before: 2, after: 3 },
      { route: 'GET /users/:id', test: 'a', figure: 'db.repeated_count (rule GET /users/*)', before: 1, after: 2, statement: 'SELECT o' },
    ]);
  });
});

describe('the CLI', () => {
  it('lints budget and baseline files, every problem with its line', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, ['version: 1', 'routes:', '  - match: GET /a', '    queries: three', ''].join('\n'));
    const baseline = path.join(dir, 'base.json');
    writeFileSync(baseline, formatBaseline(table(fig(1, { 'SELECT a': 1 }))));
    const status = await main(
      ['lint', bad, '--baseline', baseline],
      (t) => out.push(t),
      (t) => err.push(t),
    );
    expect(status).toBe(1);
    expect(err.join('')).toBe('bad.yaml:4 routes[0].queries: expected a non-negative integer, got "three"\n');
    expect(out.join('')).toBe(`${baseline}: ok (1 route)\n`);
  });

  it('checks a baseline against a budget file, and rejects a bad command line', async () => {
    const baseline = path.join(dir, 'base2.json');
    writeFileSync(baseline, formatBaseline(table(fig(4, { 'SELECT a': 4 }))));
    const budgets = path.join(dir, 'b2.yaml');
    writeFileSync(budgets, ['version: 1', 'routes:', '  - match: GET /orders', '    queries: 3', ''].join('\n'));
    const err: string[] = [];
    expect(
      await main(
        ['budgets', '--baseline', baseline, '--check', budgets],
        () => {},
        (t) => err.push(t),
      ),
    ).toBe(1);
    expect(err.join('')).toContain('| GET /orders | orders.test.ts > lists | db.queries (rule GET /orders) | 3 → 4 |  |');
    expect(
      await main(
        ['check'],
        () => {},
        () => {},
      ),
    ).toBe(2);
    expect(
      await main(
        ['frobnicate'],
        () => {},
        () => {},
      ),
    ).toBe(2);
  });
});

describe('version ranges of instrumentations', () => {
  it.each([
    ['8.23.1', ['>=8.0.3 <9'], true],
    ['9.0.0', ['>=8.0.3 <9'], false],
    ['5.3.0', ['>=4.0.0 <6'], true],
    ['3.3.0', ['^3.0.0'], true],
    ['4.0.0', ['^3.0.0'], false],
    ['2.1.9', ['~2.1.0'], true],
    ['1.0.0', ['*'], true],
    ['4.5.0', ['3.x || 4.x'], true],
  ])('%s in %j: %s', (version, ranges, expected) => {
    expect(satisfiesAny(version, ranges)).toBe(expected);
  });
});

describe('TypeScript with moduleResolution node (node10)', () => {
  it('resolves the types of @request-budget/node/testing through typesVersions', async () => {
    const project = mkdtempSync(path.join(tmpdir(), 'rb-ts-node10-'));
    try {
      symlinkSync(path.join(repoRoot, 'node_modules'), path.join(project, 'node_modules'));
      writeFileSync(
        path.join(project, 'a.ts'),
        [
          "import { measureCost, assertCost, budgetMatchers, type MeasuredCost } from '@request-budget/node/testing';",
          "import { start } from '@request-budget/node';",
          'const measure: (fn: () => unknown) => Promise<MeasuredCost> = measureCost;',
          'void measure; void assertCost; void budgetMatchers; void start;',
          '',
        ].join('\n'),
      );
      writeFileSync(
        path.join(project, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: { module: 'commonjs', moduleResolution: 'node10', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
          files: ['a.ts'],
        }),
      );
      const run = await runNode([path.join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', project], { cwd: project });
      expect(run.output.trim()).toBe('');
      expect(run.code).toBe(0);
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });
});
