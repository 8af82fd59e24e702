/**
 * The per-route baseline: what each route cost in each test, compared with what was committed.
 * Pure functions over plain data; reading and writing files is baseline-file.ts's.
 *
 * Every figure is the largest seen in one request of that route in that test, so a test that
 * sends a request twice does not double its figures, and the same suite gives the same figures.
 *
 * The ratchet: more queries, a statement repeated more often (a new N+1), more rows beyond the
 * tolerance, or a new untimed HTTP call fail the run. A cheaper route is reported, and in
 * `tighten` mode its entry is lowered; no entry is ever raised except in `accept` mode, the
 * explicit update, where the regressions are reported as accepted and do not fail the run.
 */
import type { CostPart } from './cost-part';

/** The figures of one route in one test, each the most seen in one request. */
export interface Figures {
  readonly queries: number;
  /** Runs of the most repeated statement (the N+1 figure). */
  readonly repeated: number;
  readonly rows: number;
  readonly untimedHttpCalls: number;
  /** Statement fingerprint → most runs in one request. */
  readonly statements: Readonly<Record<string, number>>;
}

/** Route label → test key → figures. */
export type RouteTable = Record<string, Record<string, Figures>>;

/** What a baseline comparison is run for. */
export type BaselineMode = 'check' | 'tighten' | 'accept';

export interface CompareOptions {
  /** Rows may grow by this fraction of the baseline before it counts (0.1 = 10%). */
  readonly rowsTolerance: number;
}

/** Names of figures as reports show them. */
export type FigureLabel = 'queries' | 'repeated statement' | 'rows' | 'untimed HTTP calls';
/** A budget metric over its limit, as reports show it: `db.queries (rule GET /orders)` (see budget-sync.ts). */
export type BudgetFigureLabel = `${string} (rule ${string})`;

/** One figure of one route in one test that moved. */
export interface Finding {
  readonly route: string;
  readonly test: string;
  readonly figure: FigureLabel | BudgetFigureLabel;
  /** Undefined when the baseline had no such figure (a statement not seen before). */
  readonly before: number | undefined;
  readonly after: number;
  readonly statement?: string;
}

export interface EntryRef {
  readonly route: string;
  readonly test: string;
}

export interface Comparison {
  readonly regressions: readonly Finding[];
  readonly improvements: readonly Finding[];
  /** Routes and tests not in the baseline. */
  readonly added: readonly (EntryRef & { readonly figures: Figures })[];
  /** Baseline entries no test exercised in this run. */
  readonly unexercised: readonly EntryRef[];
}

export const EMPTY_FIGURES: Figures = Object.freeze({ queries: 0, repeated: 0, rows: 0, untimedHttpCalls: 0, statements: Object.freeze({}) });

/** The figures of one request (or of the measured code's own part). */
export function figuresOf(part: CostPart): Figures {
  const statements: Record<string, number> = {};
  for (const { fingerprint, count } of part.statements) statements[fingerprint] = Math.max(statements[fingerprint] ?? 0, count);
  return { queries: part.queries, repeated: part.repeatedCount, rows: part.rows, untimedHttpCalls: part.httpClientUntimed, statements };
}

/** The larger of each figure: two requests of one route in one test. */
export function mergeFigures(a: Figures, b: Figures): Figures {
  const statements: Record<string, number> = { ...a.statements };
  for (const [fingerprint, count] of Object.entries(b.statements)) statements[fingerprint] = Math.max(statements[fingerprint] ?? 0, count);
  return {
    queries: Math.max(a.queries, b.queries),
    repeated: Math.max(a.repeated, b.repeated),
    rows: Math.max(a.rows, b.rows),
    untimedHttpCalls: Math.max(a.untimedHttpCalls, b.untimedHttpCalls),
    statements,
  };
}

/** Adds figures to a table, merging with what the same route and test already have. */
export function addFigures(table: RouteTable, route: string, test: string, figures: Figures): void {
  const tests = (table[route] ??= {});
  const existing = tests[test];
  tests[test] = existing === undefined ? figures : mergeFigures(existing, figures);
}

/** Merges tables (the files written by each test worker). */
export function mergeTables(tables: readonly RouteTable[]): RouteTable {
  const merged: RouteTable = {};
  for (const table of tables)
    for (const [route, tests] of Object.entries(table)) for (const [test, figures] of Object.entries(tests)) addFigures(merged, route, test, figures);
  return merged;
}

/** Compares what this run observed with the baseline. */
export function compareBaseline(baseline: RouteTable, observed: RouteTable, options: CompareOptions): Comparison {
  const regressions: Finding[] = [];
  const improvements: Finding[] = [];
  const added: (EntryRef & { figures: Figures })[] = [];
  const unexercised: EntryRef[] = [];
  for (const route of sortedKeys(observed)) {
    for (const test of sortedKeys(observed[route])) {
      const after = observed[route][test];
      const before = baseline[route]?.[test];
      if (before === undefined) {
        added.push({ route, test, figures: after });
        continue;
      }
      const found = (list: Finding[], figure: FigureLabel, was: number | undefined, now: number, statement?: string) =>
        list.push({ route, test, figure, before: was, after: now, ...(statement !== undefined ? { statement } : {}) });
      if (after.queries > before.queries) found(regressions, 'queries', before.queries, after.queries, grownStatements(before, after));
      else if (after.queries < before.queries) found(improvements, 'queries', before.queries, after.queries);
      for (const statement of sortedStatements(after.statements)) {
        const now = after.statements[statement];
        const was = before.statements[statement];
        if (now > 1 && now > (was ?? 0)) found(regressions, 'repeated statement', was, now, statement);
      }
      for (const statement of sortedStatements(before.statements)) {
        const was = before.statements[statement];
        const now = after.statements[statement] ?? 0;
        if (was > 1 && now < was) found(improvements, 'repeated statement', was, now, statement);
      }
      if (after.rows > before.rows + Math.floor(before.rows * options.rowsTolerance)) found(regressions, 'rows', before.rows, after.rows);
      else if (after.rows < before.rows) found(improvements, 'rows', before.rows, after.rows);
      if (after.untimedHttpCalls > before.untimedHttpCalls) found(regressions, 'untimed HTTP calls', before.untimedHttpCalls, after.untimedHttpCalls);
      else if (after.untimedHttpCalls < before.untimedHttpCalls) found(improvements, 'untimed HTTP calls', before.untimedHttpCalls, after.untimedHttpCalls);
    }
  }
  for (const route of sortedKeys(baseline))
    for (const test of sortedKeys(baseline[route])) if (observed[route]?.[test] === undefined) unexercised.push({ route, test });
  return { regressions, improvements, added, unexercised };
}

/**
 * The baseline to write after this run. `check` writes nothing (returns the baseline as it was);
 * `tighten` lowers each figure that went down and adds new routes and tests, never raising one;
 * `accept` takes this run's figures for every route and test it exercised.
 */
export function nextBaseline(baseline: RouteTable, observed: RouteTable, mode: BaselineMode): RouteTable {
  if (mode === 'check') return baseline;
  const next: RouteTable = {};
  for (const [route, tests] of Object.entries(baseline)) next[route] = { ...tests };
  for (const [route, tests] of Object.entries(observed)) {
    for (const [test, after] of Object.entries(tests)) {
      const before = baseline[route]?.[test];
      (next[route] ??= {})[test] = before === undefined || mode === 'accept' ? after : tightened(before, after);
    }
  }
  return next;
}

/** Each figure at most what it was: lower where this run did better, unchanged where worse. */
function tightened(before: Figures, after: Figures): Figures {
  const statements: Record<string, number> = {};
  for (const [statement, now] of Object.entries(after.statements)) {
    const was = before.statements[statement];
    if (was !== undefined) statements[statement] = Math.min(was, now);
    // A statement new to this entry is kept when it took another's place (no more queries than
    // before, and once); one added on top, or repeated, is a regression and stays out.
    else if (now <= 1 && after.queries <= before.queries) statements[statement] = now;
  }
  const repeated = Math.min(before.repeated, Math.max(0, ...Object.values(statements)));
  return {
    queries: Math.min(before.queries, after.queries),
    repeated,
    rows: Math.min(before.rows, after.rows),
    untimedHttpCalls: Math.min(before.untimedHttpCalls, after.untimedHttpCalls),
    statements,
  };
}

/** Whether two tables hold the same figures (nothing to write). */
export function sameTables(a: RouteTable, b: RouteTable): boolean {
  return JSON.stringify(canonicalTable(a)) === JSON.stringify(canonicalTable(b));
}

/** The table with every key sorted, as it is written. */
export function canonicalTable(table: RouteTable): RouteTable {
  const out: RouteTable = {};
  for (const route of sortedKeys(table)) {
    const tests: Record<string, Figures> = {};
    for (const test of sortedKeys(table[route])) {
      const figures = table[route][test];
      const statements: Record<string, number> = {};
      for (const statement of sortedKeys(figures.statements)) statements[statement] = figures.statements[statement]!;
      tests[test] = { queries: figures.queries, repeated: figures.repeated, rows: figures.rows, untimedHttpCalls: figures.untimedHttpCalls, statements };
    }
    if (Object.keys(tests).length > 0) out[route] = tests;
  }
  return out;
}

/** Code-unit order: the same on every machine and locale. */
export function sortedKeys(object: object): string[] {
  return Object.keys(object).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The statements that ran more often than in the baseline (new ones included), for the queries row. */
function grownStatements(before: Figures, after: Figures): string | undefined {
  const grown = sortedStatements(after.statements).filter((statement) => after.statements[statement] > (before.statements[statement] ?? 0));
  return grown.length === 0 ? undefined : grown.join(' ; ');
}

function sortedStatements(statements: Readonly<Record<string, number>>): string[] {
  return sortedKeys(statements);
}
