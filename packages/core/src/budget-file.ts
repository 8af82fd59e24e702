/**
 * The budget file: reading it (YAML or JSON), validating it against the published JSON Schema,
 * and turning it into {@link Budgets}. Every problem is reported with the file, the line and the
 * field, e.g. `budgets.yaml:7 routes[1].queries: expected a non-negative integer, got "three"`;
 * all problems at once, so a user fixes the file in one pass.
 */
import Ajv, { type ErrorObject } from 'ajv';
import ajvErrors from 'ajv-errors';
import { readFileSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { isMap, LineCounter, parseDocument, type Document } from 'yaml';
import type { HeapConfidence } from './attributes';
import { parseByteSize } from './byte-size';
import { compileJobPattern, compileRoutePattern } from './rule-pattern';

export type Severity = 'info' | 'warning' | 'critical';

/** Limit names as written in budget files. */
export const LIMIT_NAMES = [
  'queries',
  'dbTimeMs',
  'rows',
  'repeatedQueries',
  'heapDeltaBytes',
  'allocatedBytes',
  'dbBytes',
  'durationMs',
  'httpClientCalls',
  'untimedHttpCalls',
  'enqueuedJobs',
] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];
export type Limits = Partial<Record<LimitName, number>>;
/** Limits given in bytes: a number or a size such as `8 MiB`. */
const BYTE_LIMITS: ReadonlySet<LimitName> = new Set(['heapDeltaBytes', 'allocatedBytes', 'dbBytes']);

/** Settings a rule (or the defaults) may give; unset ones fall back to the defaults. */
export interface RuleSettings {
  readonly limits: Limits;
  readonly severity?: Severity;
  readonly heapMinConfidence?: HeapConfidence;
  readonly allowRepeated?: readonly string[];
}

export interface BudgetRule extends RuleSettings {
  /** The rule's `match` as written, e.g. `GET /users/:id`: reported as `budget.rule`. */
  readonly match: string;
  /** Where it was written, for messages: `budgets.yaml:12`. */
  readonly location: string;
}

/** A validated budget file. */
export interface Budgets {
  /** File name (or `budgets option`) the rules came from. */
  readonly source: string;
  readonly defaults: RuleSettings;
  readonly routes: readonly BudgetRule[];
  readonly jobs: readonly BudgetRule[];
}

/** A budget file that cannot be used; `problems` holds one line per problem. */
export class BudgetFileError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid budget file ${source}:\n  ${problems.join('\n  ')}`);
    this.name = 'BudgetFileError';
  }
}

const SCHEMA_PATH = join(__dirname, '..', 'schema', 'budget-file.schema.json');

/** Largest budget file read: far above any real one (20,000 rules take about 1 MiB). */
export const MAX_BUDGET_FILE_BYTES = 8 * 1024 * 1024;
/** YAML aliases expanded at most: a file of nested aliases could otherwise expand to gigabytes. */
const MAX_YAML_ALIASES = 1000;

/**
 * Reads and validates a budget file (`.yaml`, `.yml` or `.json`). Only a regular file of at most
 * {@link MAX_BUDGET_FILE_BYTES} is read: a device or a pipe would block the app's start or never
 * end. Throws {@link BudgetFileError}.
 */
export function loadBudgetFile(path: string): Budgets {
  let text: string;
  try {
    const stats = statSync(path);
    if (!stats.isFile())
      throw new BudgetFileError(path, [`cannot read ${path}: not a regular file (${fileKind(stats)}); give the path of a YAML or JSON file`]);
    if (stats.size > MAX_BUDGET_FILE_BYTES)
      throw new BudgetFileError(path, [`cannot read ${path}: ${stats.size} bytes, more than the ${MAX_BUDGET_FILE_BYTES} a budget file may have`]);
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (error instanceof BudgetFileError) throw error;
    throw new BudgetFileError(path, [`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`]);
  }
  return parseBudgetText(text, path);
}

function fileKind(stats: import('node:fs').Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a named pipe';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device';
  if (stats.isSocket()) return 'a socket';
  return 'not a file';
}

/** Validates budget file text; `fileName` names it in messages and decides nothing else. */
export function parseBudgetText(text: string, fileName: string): Budgets {
  const name = basename(fileName);
  const lines = new LineCounter();
  // JSON is parsed as YAML too: YAML 1.2 reads JSON documents, and keeps the positions.
  const document = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: true });
  if (document.errors.length > 0) {
    const syntax = extname(fileName).toLowerCase() === '.json' ? 'JSON' : 'YAML';
    throw new BudgetFileError(
      fileName,
      document.errors.map((error) => `${name}:${error.linePos?.[0].line ?? 1} ${syntax} syntax: ${firstLine(error.message)}`),
    );
  }
  let input: unknown;
  try {
    input = document.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (error) {
    throw new BudgetFileError(fileName, [
      `${name}:1 YAML: ${firstLine(error instanceof Error ? error.message : String(error))} (at most ${MAX_YAML_ALIASES} aliases are expanded)`,
    ]);
  }
  return validateBudgets(input, fileName, (path) => `${name}:${lineOf(document, lines, path)}`);
}

/**
 * Validates budgets given as an object (the `budgets` option of `start()`). Messages name the
 * field only: `budgets option routes[1].queries: …`.
 */
export function parseBudgetObject(input: unknown, sourceName = 'budgets option'): Budgets {
  return validateBudgets(input, sourceName, () => sourceName);
}

type Locate = (path: readonly (string | number)[]) => string;

function validateBudgets(input: unknown, source: string, locate: Locate): Budgets {
  const validate = compiledSchema();
  // Schema and meaning are checked together, so one pass over the problems fixes the file.
  const problems = validate(input) ? [] : (validate.errors ?? []).map((error) => describeSchemaError(error, input, locate));
  problems.push(...semanticProblems(input, locate));
  if (problems.length > 0) throw new BudgetFileError(source, byLine(problems));
  const file = input as RawBudgetFile;
  const readRules = (key: 'routes' | 'jobs') =>
    (file[key] ?? []).map((raw, index) => ({ match: raw.match, location: locate([key, index]), ...readSettings(raw) }) satisfies BudgetRule);
  return { source, defaults: readSettings(file.defaults ?? {}), routes: readRules('routes'), jobs: readRules('jobs') };
}

let schemaValidator: ReturnType<Ajv['compile']> | undefined;

/** The schema, compiled on first use and kept: compiling costs more than validating a file. */
function compiledSchema(): ReturnType<Ajv['compile']> {
  if (schemaValidator === undefined) {
    const ajv = new Ajv({ allErrors: true, allowUnionTypes: true, strict: true });
    ajvErrors(ajv);
    schemaValidator = ajv.compile(JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')));
  }
  return schemaValidator;
}

/**
 * What the schema cannot say: patterns that are malformed or can never match, and rules that
 * repeat an earlier one (which would always win). Looks only at the parts that have the right
 * shape, so it runs beside the schema's own problems. Linear in the number of rules.
 */
function semanticProblems(input: unknown, locate: Locate): string[] {
  const problems: string[] = [];
  if (input === null || typeof input !== 'object') return problems;
  const file = input as Record<string, unknown>;
  for (const key of ['routes', 'jobs'] as const) {
    const rules = file[key];
    if (!Array.isArray(rules)) continue;
    const firstByMatch = new Map<string, number>();
    rules.forEach((raw: unknown, index) => {
      const path = [key, index];
      const match = (raw as { match?: unknown } | null)?.match;
      if (typeof match !== 'string') return;
      const problem = (key === 'routes' ? compileRoutePattern : compileJobPattern)(match).problem;
      if (problem !== undefined) problems.push(`${locate([...path, 'match'])} ${formatPath([...path, 'match'])}: ${problem}, got ${JSON.stringify(match)}`);
      // Methods are case-insensitive, paths and job names are not.
      const normalised = match
        .trim()
        .split(/\s+/)
        .map((part, i, all) => (all.length === 2 && i === 0 ? part.toUpperCase() : part))
        .join(' ');
      const first = firstByMatch.get(normalised);
      if (first === undefined) firstByMatch.set(normalised, index);
      else problems.push(`${locate([key, index, 'match'])} ${key}[${index}].match: same as ${key}[${first}] (${match}), which would always win`);
    });
  }
  return problems;
}

/** Problems in file order (`name:line …`), the order a user fixes them in. */
function byLine(problems: string[]): string[] {
  const line = (problem: string) => Number(/^[^\s:]*:(\d+) /.exec(problem)?.[1] ?? 0);
  return problems
    .map((problem, index) => ({ problem, index }))
    .sort((a, b) => line(a.problem) - line(b.problem) || a.index - b.index)
    .map((entry) => entry.problem);
}

interface RawSettings extends Partial<Record<LimitName, number | string>> {
  severity?: Severity;
  heapMinConfidence?: HeapConfidence;
  allowRepeated?: string[];
}
interface RawBudgetFile {
  version: 1;
  defaults?: RawSettings;
  routes?: (RawSettings & { match: string })[];
  jobs?: (RawSettings & { match: string })[];
}

function readSettings(raw: RawSettings): RuleSettings {
  const limits: Limits = {};
  for (const name of LIMIT_NAMES) {
    const value = raw[name];
    // The schema has checked the form; sizes are the only strings.
    if (value !== undefined) limits[name] = BYTE_LIMITS.has(name) ? parseByteSize(value)! : Number(value);
  }
  return {
    limits,
    ...(raw.severity !== undefined ? { severity: raw.severity } : {}),
    ...(raw.heapMinConfidence !== undefined ? { heapMinConfidence: raw.heapMinConfidence } : {}),
    ...(raw.allowRepeated !== undefined ? { allowRepeated: raw.allowRepeated } : {}),
  };
}

/** One line for one schema error, with ajv-errors' message and the offending value. */
function describeSchemaError(error: ErrorObject, input: unknown, locate: Locate): string {
  const path = pointerToPath(error.instancePath);
  const original = (error.params as { errors?: ErrorObject[] }).errors?.[0] ?? error;
  if (original.keyword === 'additionalProperties') {
    const key = (original.params as { additionalProperty: string }).additionalProperty;
    return `${locate([...path, key])} ${formatPath([...path, key])}: ${error.message}`;
  }
  if (original.keyword === 'required') return `${locate(path)} ${formatPath(path) || '(top level)'}: ${error.message}`;
  const value = valueAt(input, path);
  return `${locate(path)} ${formatPath(path) || '(top level)'}: ${error.message}, got ${describeValue(value)}`;
}

function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part) => (/^\d+$/.test(part) ? Number(part) : part));
}

/** `routes[1].queries` */
export function formatPath(path: readonly (string | number)[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

function valueAt(input: unknown, path: readonly (string | number)[]): unknown {
  return path.reduce<unknown>((value, key) => (value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined), input);
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return JSON.stringify(value);
}

/** Line of the node at `path` (of the key itself for a key the schema rejects); 1 when unknown. */
function lineOf(document: Document, lines: LineCounter, path: readonly (string | number)[]): number {
  const parent = path.length > 0 ? document.getIn(path.slice(0, -1), true) : undefined;
  const last = path[path.length - 1];
  if (isMap(parent)) {
    const pair = parent.items.find((item) => (item.key as { value?: unknown } | null)?.value === last);
    const keyRange = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
    if (keyRange) return lines.linePos(keyRange[0]).line;
  }
  const node = document.getIn(path, true) as { range?: [number, number, number] } | undefined;
  if (node?.range) return lines.linePos(node.range[0]).line;
  const parentRange = (parent as { range?: [number, number, number] } | undefined)?.range;
  return parentRange ? lines.linePos(parentRange[0]).line : 1;
}

/** The parser's message without the position it appends (the line is already in front). */
function firstLine(message: string): string {
  return message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
}
