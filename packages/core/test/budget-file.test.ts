import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BudgetFileError, loadBudgetFile, MAX_BUDGET_FILE_BYTES, parseBudgetObject, parseBudgetText } from '../src/budget-file';

function problemsOf(text: string, name = 'budgets.yaml'): readonly string[] {
  try {
    parseBudgetText(text, name);
  } catch (error) {
    if (error instanceof BudgetFileError) return error.problems;
    throw error;
  }
  throw new Error('expected the file to be rejected');
}

const VALID = `version: 1
defaults: { queries: 20, dbTimeMs: 200, heapDeltaBytes: 32MiB, durationMs: 1000 }
routes:
  - match: GET /users/:id
    queries: 3
    dbTimeMs: 30
  - match: POST /orders
    durationMs: 300
    severity: critical
    allowRepeated: ["SELECT * FROM prices WHERE sku = $1"]
jobs:
  - match: email.*
    durationMs: 2000
    heapMinConfidence: high
`;

describe('parseBudgetText', () => {
  it('reads the design example, sizes in bytes, with where each rule was written', () => {
    expect(parseBudgetText(VALID, '/etc/app/budgets.yaml')).toEqual({
      source: '/etc/app/budgets.yaml',
      defaults: { limits: { queries: 20, dbTimeMs: 200, heapDeltaBytes: 33554432, durationMs: 1000 } },
      routes: [
        { match: 'GET /users/:id', location: 'budgets.yaml:4', limits: { queries: 3, dbTimeMs: 30 } },
        {
          match: 'POST /orders',
          location: 'budgets.yaml:7',
          limits: { durationMs: 300 },
          severity: 'critical',
          allowRepeated: ['SELECT * FROM prices WHERE sku = $1'],
        },
      ],
      jobs: [{ match: 'email.*', location: 'budgets.yaml:12', limits: { durationMs: 2000 }, heapMinConfidence: 'high' }],
    });
  });

  it('reads the same budgets from JSON', () => {
    const json = JSON.stringify({ version: 1, defaults: { heapDeltaBytes: '512KiB', rows: 1000 }, routes: [{ match: '/health', queries: 0 }] }, null, 2);
    const budgets = parseBudgetText(json, 'budgets.json');
    expect(budgets.defaults.limits).toEqual({ heapDeltaBytes: 524288, rows: 1000 });
    expect(budgets.routes[0]).toEqual({ match: '/health', location: 'budgets.json:8', limits: { queries: 0 } });
  });

  it('names file, line and field of every problem, with the value it got', () => {
    const text = `version: 1
defaults:
  queries: 20
  heapDeltaBytes: lots
routes:
  - match: GET /users/:id
    queries: three
  - match: POST /orders
    durationMs: -5
    severity: urgent
    querys: 4
  - queries: 2
  - match: FETCH /x
jobs: nope
`;
    expect(problemsOf(text)).toEqual([
      'budgets.yaml:4 defaults.heapDeltaBytes: expected a byte size such as 524288, 512KiB or 8MiB, got "lots"',
      'budgets.yaml:7 routes[0].queries: expected a non-negative integer, got "three"',
      'budgets.yaml:9 routes[1].durationMs: expected a non-negative number of milliseconds, got -5',
      'budgets.yaml:10 routes[1].severity: expected one of info, warning, critical, got "urgent"',
      'budgets.yaml:11 routes[1].querys: unknown key (expected one of match, queries, dbTimeMs, rows, repeatedQueries, heapDeltaBytes, allocatedBytes, dbBytes, durationMs, httpClientCalls, untimedHttpCalls, enqueuedJobs, severity, heapMinConfidence, allowRepeated)',
      'budgets.yaml:12 routes[2]: missing "match"',
      'budgets.yaml:13 routes[3].match: "FETCH" is not an HTTP method (expected GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH, QUERY or *), got "FETCH /x"',
      'budgets.yaml:14 jobs: expected a list of job rules, got "nope"',
    ]);
  });

  it('rejects a bad route pattern and a duplicate rule after the schema passes', () => {
    const text = `version: 1
routes:
  - match: FETCH /x
    queries: 1
  - match: GET users
    queries: 1
  - match: GET /a
    queries: 1
  - match: GET /a
    queries: 2
`;
    expect(problemsOf(text)).toEqual([
      'budgets.yaml:3 routes[0].match: "FETCH" is not an HTTP method (expected GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH, QUERY or *), got "FETCH /x"',
      'budgets.yaml:5 routes[1].match: the path must start with /, got "GET users"',
      'budgets.yaml:9 routes[3].match: same as routes[2] (GET /a), which would always win',
    ]);
  });

  it('reports the version, unknown top-level keys and syntax errors', () => {
    expect(problemsOf('routes: []\nbudgets: {}\n')).toEqual([
      'budgets.yaml:1 (top level): missing "version" (write version: 1)',
      'budgets.yaml:2 budgets: unknown key (expected one of version, defaults, routes, jobs)',
    ]);
    expect(problemsOf('version: 2\n')).toEqual(['budgets.yaml:1 version: expected 1 (the only budget file version), got 2']);
    // The parser notices the unclosed list at the end of the text.
    expect(problemsOf('version: 1\nroutes:\n  - match: [unclosed\n')).toEqual([
      'budgets.yaml:4 YAML syntax: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ]);
    expect(problemsOf('{"version": 1,\n "version": 1}', 'b.json')).toEqual(['b.json:2 JSON syntax: Map keys must be unique']);
  });
});

describe('loadBudgetFile and parseBudgetObject', () => {
  it('loads from disk and says when the file cannot be read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'budgets-'));
    writeFileSync(join(dir, 'b.yml'), VALID);
    expect(loadBudgetFile(join(dir, 'b.yml')).routes).toHaveLength(2);
    expect(() => loadBudgetFile(join(dir, 'missing.yaml'))).toThrow(
      `invalid budget file ${join(dir, 'missing.yaml')}:\n  cannot read ${join(dir, 'missing.yaml')}: ENOENT`,
    );
  });

  it('validates an object given in code, naming the option', () => {
    expect(parseBudgetObject({ version: 1, routes: [{ match: '/x', rows: 10 }] }).routes[0]).toEqual({
      match: '/x',
      location: 'budgets option',
      limits: { rows: 10 },
    });
    expect(() => parseBudgetObject({ version: 1, defaults: { rows: 1.5 } })).toThrow('budgets option defaults.rows: expected a non-negative integer, got 1.5');
  });
});

describe('hostile or huge budget files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-budgets-'));

  it('refuses what is not a regular file without reading it (a device, a pipe, a directory)', () => {
    const fifo = join(dir, 'budgets.fifo');
    execFileSync('mkfifo', [fifo]);
    const problems = (path: string) => {
      try {
        loadBudgetFile(path);
        return [];
      } catch (error) {
        return (error as BudgetFileError).problems;
      }
    };
    expect(problems('/dev/zero')).toEqual(['cannot read /dev/zero: not a regular file (a device); give the path of a YAML or JSON file']);
    expect(problems(fifo)).toEqual([`cannot read ${fifo}: not a regular file (a named pipe); give the path of a YAML or JSON file`]);
    expect(problems(dir)).toEqual([`cannot read ${dir}: not a regular file (a directory); give the path of a YAML or JSON file`]);
  });

  it('refuses a file over the size limit', () => {
    const big = join(dir, 'big.yaml');
    writeFileSync(big, `version: 1\n#${'x'.repeat(MAX_BUDGET_FILE_BYTES)}\n`);
    expect(() => loadBudgetFile(big)).toThrow(`bytes, more than the ${MAX_BUDGET_FILE_BYTES} a budget file may have`);
  });

  it('turns a YAML alias bomb into a budget file error (not an exception that stops the SDK)', () => {
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 9; i += 1)
      levels.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(',')}]`,
      );
    const error = catchError(() => parseBudgetText(`version: 1\n${levels.join('\n')}\n`, 'bomb.yaml'));
    expect(error).toBeInstanceOf(BudgetFileError);
    expect((error as BudgetFileError).problems).toEqual([
      'bomb.yaml:1 YAML: Excessive alias count indicates a resource exhaustion attack (at most 1000 aliases are expanded)',
    ]);
  });

  it('loads 20,000 rules in time linear in their number, and finds a duplicate among them', () => {
    const fileOf = (count: number, extra = '') =>
      `version: 1\nroutes:\n${Array.from({ length: count }, (_, i) => `  - match: GET /r${i}/:id\n    queries: ${(i % 7) + 1}`).join('\n')}\n${extra}`;
    const timed = (count: number) => {
      const started = performance.now();
      const budgets = parseBudgetText(fileOf(count), 'many.yaml');
      return { budgets, ms: performance.now() - started };
    };
    timed(200); // warm-up: the schema compiles on first use
    const small = timed(2_000);
    const large = timed(20_000);
    expect(large.budgets.routes).toHaveLength(20_000);
    expect(large.budgets.routes[19_999]).toMatchObject({ match: 'GET /r19999/:id', limits: { queries: 1 }, location: 'many.yaml:40001' });
    // Ten times the rules: about ten times the time when linear, a hundred when quadratic (the
    // duplicate check alone took 189 s for 20,000 rules). A ratio, so a slow machine passes too.
    expect(large.ms / small.ms).toBeLessThan(40);
    const duplicated = catchError(() => parseBudgetText(fileOf(20_000, '  - match: get /r5/:id\n    queries: 1\n'), 'many.yaml'));
    expect((duplicated as BudgetFileError).problems).toEqual(['many.yaml:40003 routes[20000].match: same as routes[5] (get /r5/:id), which would always win']);
  });

  it('reports schema and meaning problems together, and patterns that can never match with the reason', () => {
    const error = catchError(() =>
      parseBudgetText(
        [
          'version: 1',
          'routes:',
          '  - match: GET /users/:id',
          '    queries: three',
          '  - match: GET /users*',
          '  - match: /search?q=1',
          "  - match: 'GET /a/:'",
          'defaults:',
          '  allowRepeated: [""]',
        ].join('\n'),
        'mixed.yaml',
      ),
    );
    expect((error as BudgetFileError).problems).toEqual([
      'mixed.yaml:4 routes[0].queries: expected a non-negative integer, got "three"',
      'mixed.yaml:5 routes[1].match: it can never match a route template: "users*": * and ** stand for whole segments only, got "GET /users*"',
      'mixed.yaml:6 routes[2].match: it can never match a route template: route templates have no query string or fragment, got "/search?q=1"',
      'mixed.yaml:7 routes[3].match: it can never match a route template: a parameter needs a name, as in :id, got "GET /a/:"',
      'mixed.yaml:9 defaults.allowRepeated[0]: expected a statement pattern (text, * matches anything), got ""',
    ]);
  });
});

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}
