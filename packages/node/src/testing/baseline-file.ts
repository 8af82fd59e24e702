/**
 * The committed baseline file: JSON, every key sorted, two-space indent, one figure per line, so
 * a change to one route in one test is a change to those lines in the pull request.
 *
 *   {
 *     "version": 1,
 *     "routes": {
 *       "GET /users/:id": {
 *         "users.test.ts > returns the user": {
 *           "queries": 2, "repeated": 1, "rows": 4, "untimedHttpCalls": 0,
 *           "statements": { "SELECT … WHERE id = $1": 1, … }
 *         }
 *       }
 *     }
 *   }
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { canonicalTable, type Figures, type RouteTable } from './baseline';

export const BASELINE_VERSION = 1;

/** A baseline file that cannot be used; `problems` holds one line per problem. */
export class BaselineFileError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid baseline file ${source}:\n  ${problems.join('\n  ')}`);
    this.name = 'BaselineFileError';
  }
}

/** The baseline at `path`, or undefined when there is no file yet. Throws {@link BaselineFileError}. */
export function readBaselineFile(path: string): RouteTable | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BaselineFileError(path, [`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`]);
  }
  return parseBaseline(text, path);
}

/** Validates baseline text; every problem at once. */
export function parseBaseline(text: string, source: string): RouteTable {
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch (error) {
    throw new BaselineFileError(source, [`${basename(source)}: JSON syntax: ${(error as Error).message}`]);
  }
  const problems: string[] = [];
  const table: RouteTable = {};
  if (!isObject(input)) throw new BaselineFileError(source, ['(top level): expected an object with version and routes']);
  if (input.version !== BASELINE_VERSION) problems.push(`version: expected ${BASELINE_VERSION}, got ${JSON.stringify(input.version)}`);
  for (const key of Object.keys(input)) if (key !== 'version' && key !== 'routes') problems.push(`${key}: unknown key (expected version, routes)`);
  if (!isObject(input.routes)) problems.push('routes: expected an object of routes');
  else {
    for (const [route, tests] of Object.entries(input.routes)) {
      const at = `routes[${JSON.stringify(route)}]`;
      if (!isObject(tests)) {
        problems.push(`${at}: expected an object of tests`);
        continue;
      }
      for (const [test, figures] of Object.entries(tests)) {
        const read = readFigures(figures, `${at}[${JSON.stringify(test)}]`, problems);
        if (read !== undefined) (table[route] ??= {})[test] = read;
      }
    }
  }
  if (problems.length > 0) throw new BaselineFileError(source, problems);
  return table;
}

const FIGURE_NAMES = ['queries', 'repeated', 'rows', 'untimedHttpCalls'] as const;

function readFigures(input: unknown, at: string, problems: string[]): Figures | undefined {
  if (!isObject(input)) {
    problems.push(`${at}: expected an object of figures`);
    return undefined;
  }
  const before = problems.length;
  for (const name of FIGURE_NAMES)
    if (!isCount(input[name])) problems.push(`${at}.${name}: expected a non-negative integer, got ${JSON.stringify(input[name])}`);
  for (const key of Object.keys(input))
    if (!(FIGURE_NAMES as readonly string[]).includes(key) && key !== 'statements')
      problems.push(`${at}.${key}: unknown key (expected ${FIGURE_NAMES.join(', ')}, statements)`);
  const statements: Record<string, number> = {};
  if (!isObject(input.statements)) problems.push(`${at}.statements: expected an object of statement → count`);
  else {
    for (const [statement, count] of Object.entries(input.statements)) {
      if (isCount(count)) statements[statement] = count;
      else problems.push(`${at}.statements[${JSON.stringify(statement)}]: expected a non-negative integer, got ${JSON.stringify(count)}`);
    }
  }
  if (problems.length > before) return undefined;
  return {
    queries: input.queries as number,
    repeated: input.repeated as number,
    rows: input.rows as number,
    untimedHttpCalls: input.untimedHttpCalls as number,
    statements,
  };
}

/** The file's text for a table: stable, sorted, newline-terminated. */
export function formatBaseline(table: RouteTable): string {
  return `${JSON.stringify({ version: BASELINE_VERSION, routes: canonicalTable(table) }, null, 2)}\n`;
}

/** Writes the baseline in one step (a reader never sees half a file). */
export function writeBaselineFile(path: string, table: RouteTable): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, formatBaseline(table));
  renameSync(temporary, path);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}
