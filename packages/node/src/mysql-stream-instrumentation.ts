/**
 * Makes a streamed mysql2 query (`query(...).stream()`, `execute(...).stream()`, the query's own
 * 'result' events, Knex's `.stream()`) one query whose span lasts until its last row and whose
 * `db.response.returned_rows` is every row it streamed.
 *
 * instrumentation-mysql2 handles a query without a callback in two ways, both wrong for a
 * stream: called with the statement alone, it ends the span at the first row (with 0 rows, or
 * never when there is no row); called with the statement and its values, as Knex does, it never
 * ends the span at all, so the query is not counted. This layer sits over instrumentation-mysql2:
 * it passes the statement and values as one options object (which mysql2 takes the same way), so
 * instrumentation-mysql2 always takes its first path, then takes back the 'result' listener that
 * path added and calls it itself when the query ends: at its 'end', or when the consumer closes
 * the stream early. Rows are counted as 'result' events pass, with their wire bytes (see
 * mysql-row-bytes-instrumentation.ts); a failed query is still ended by instrumentation-mysql2's
 * own 'error' listener. A pool's query (a command with its callback) is ended by its callback
 * alone, with all its results (see `endAtCallback`).
 */
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';
import { describeError, reportProblem } from './diagnostics';
import { lastRowBytes } from './mysql-row-bytes-instrumentation';
import { installLayer, removeLayer, type AnyFunction } from './prototype-layer';

const LAYER_NAME = 'mysql2-stream';
const STREAMED_ROWS = Symbol('request-budget.mysql2-streamed-rows');
const STREAMED_BYTES = Symbol('request-budget.mysql2-streamed-bytes');
const TRACKER = Symbol('request-budget.mysql2-streamed-query');
const STREAM = Symbol('request-budget.mysql2-query-stream');

/** mysql2 versions whose query commands and streams this was checked against (3.24). */
const SUPPORTED_VERSIONS = ['>=2 <4'];

interface Emitter {
  on(event: string, listener: AnyFunction): unknown;
  once(event: string, listener: AnyFunction): unknown;
  removeListener(event: string, listener: AnyFunction): unknown;
  rawListeners(event: string): AnyFunction[];
}
interface Command extends Emitter {
  execute: AnyFunction;
  onResult?: AnyFunction;
  [TRACKER]?: StreamedQuery;
  [STREAM]?: { destroyed?: boolean };
}

/**
 * The row count of a streamed query, as handed to instrumentation-mysql2's responseHook in
 * place of the rows; undefined for anything else.
 */
export function streamedRowCount(queryResults: unknown): number | undefined {
  if (typeof queryResults !== 'object' || queryResults === null || !(STREAMED_ROWS in queryResults)) return undefined;
  return (queryResults as { [STREAMED_ROWS]: number })[STREAMED_ROWS];
}

/** The wire bytes of a streamed query's rows, beside {@link streamedRowCount}; undefined when not all were measured. */
export function streamedRowBytes(queryResults: unknown): number | undefined {
  if (typeof queryResults !== 'object' || queryResults === null || !(STREAMED_BYTES in queryResults)) return undefined;
  const bytes = (queryResults as { [STREAMED_BYTES]: number })[STREAMED_BYTES];
  return Number.isInteger(bytes) ? bytes : undefined;
}

/** One streamed query: counts its rows and ends instrumentation-mysql2's span when it ends. */
class StreamedQuery {
  private rows = 0;
  // NaN once a row could not be measured: the bytes are then unknown.
  private bytes = 0;
  private finished = false;

  constructor(
    private readonly command: Command,
    private readonly endSpan: AnyFunction,
  ) {}

  row(value: unknown): void {
    // Rows the consumer no longer receives (its stream is destroyed) are not counted.
    if (this.finished || isResultHeader(value) || this.command[STREAM]?.destroyed === true) return;
    this.rows += 1;
    this.bytes += lastRowBytes(this.command) ?? Number.NaN;
  }

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.endSpan({ [STREAMED_ROWS]: this.rows, [STREAMED_BYTES]: this.bytes });
  }
}

export class MysqlStreamInstrumentation extends InstrumentationBase<InstrumentationConfig> {
  private reported = false;
  private pooledReported = false;

  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/mysql2-stream', '0.1.0', config);
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition('mysql2', SUPPORTED_VERSIONS, undefined, undefined, [
        new InstrumentationNodeModuleFile(
          'mysql2/lib/connection.js',
          SUPPORTED_VERSIONS,
          (Connection: { prototype?: object }) => {
            const prototype = queryPrototype(Connection);
            installLayer(prototype, 'query', LAYER_NAME, (original, state) => this.streamedAsOne(original, state, false));
            installLayer(prototype, 'execute', LAYER_NAME, (original, state) => this.streamedAsOne(original, state, true));
            return Connection;
          },
          (Connection?: { prototype?: object }) => {
            const prototype = queryPrototype(Connection);
            removeLayer(prototype, 'query', LAYER_NAME);
            removeLayer(prototype, 'execute', LAYER_NAME);
          },
        ),
        // Execute commands share Query's stream(), copied when mysql2 loads its execute command.
        new InstrumentationNodeModuleFile(
          'mysql2/lib/commands/query.js',
          SUPPORTED_VERSIONS,
          (Query: { prototype?: object }) => {
            installLayer(Query?.prototype, 'stream', LAYER_NAME, (original, state) => this.closingWithStream(original, state));
            return Query;
          },
          (Query?: { prototype?: object }) => removeLayer(Query?.prototype, 'stream', LAYER_NAME),
        ),
      ]),
    ];
  }

  /** query/execute: a call without a callback becomes one options object, then is tracked. */
  private streamedAsOne(original: AnyFunction, state: { active: boolean }, isExecute: boolean): AnyFunction {
    const instrumentation = this;
    return function queryStreamedAsOne(this: unknown, ...args: unknown[]) {
      if (!state.active) return original.apply(this, args);
      let plan: { single: unknown[]; before: AnyFunction[] } | undefined;
      let pooled: { command: Command; before: AnyFunction[] } | undefined;
      try {
        if (isEventMode(args)) plan = { single: asOneArgument(args, isExecute), before: isCommand(args[0]) ? args[0].rawListeners('result') : [] };
        else if (isPooledCommand(args)) pooled = { command: args[0], before: args[0].rawListeners('result') };
      } catch (error) {
        instrumentation.reportOnce(describeError(error));
        plan = pooled = undefined;
      }
      // mysql2's own errors (a bad bind parameter throws) reach the caller unchanged.
      if (plan === undefined) {
        const command = original.apply(this, args) as unknown;
        if (pooled !== undefined) instrumentation.endAtCallback(pooled.command, pooled.before);
        return command;
      }
      const command = original.apply(this, plan.single) as unknown;
      instrumentation.track(command, plan.before);
      return command;
    };
  }

  /**
   * Takes back the 'result' listener instrumentation-mysql2 added (the only one added during
   * the call) and ends its span at the query's end instead of at its first row.
   */
  private track(command: unknown, before: readonly AnyFunction[]): void {
    try {
      if (!isCommand(command) || command[TRACKER] !== undefined) return;
      const added = command.rawListeners('result').filter((listener) => !before.includes(listener));
      if (added.length === 0) return; // instrumentation-mysql2 is not enabled: no span to end
      if (added.length > 1) {
        this.reportOnce(`${added.length} 'result' listeners were added by the layers under it, 1 expected`);
        return;
      }
      const [endSpan] = added;
      command.removeListener('result', endSpan);
      const tracker = new StreamedQuery(command, endSpan);
      command[TRACKER] = tracker;
      command.on('result', (value: unknown) => tracker.row(value));
      command.once('end', () => tracker.finish());
    } catch (error) {
      this.reportOnce(describeError(error));
    }
  }

  /**
   * A pool's query is a command carrying its callback (onResult): instrumentation-mysql2 ends the
   * span from the callback, with every result, but also at the command's first 'result' event,
   * which a statement without rows emits before the callback (an UPDATE among several
   * statements, the status at the end of a CALL), with that statement's header alone: its rows
   * and their bytes would be lost. That listener is taken back.
   */
  private endAtCallback(command: Command, before: readonly AnyFunction[]): void {
    try {
      const added = command.rawListeners('result').filter((listener) => !before.includes(listener));
      if (added.length === 1) command.removeListener('result', added[0]);
      else if (added.length > 1 && !this.pooledReported) {
        this.pooledReported = true;
        reportProblem(
          `a pooled mysql2 query with several results may count only the first (${added.length} 'result' listeners were added, 1 expected; reported once)`,
        );
      }
    } catch (error) {
      this.reportOnce(describeError(error));
    }
  }

  /** stream(): remembers the stream, and ends the query's accounting if it closes first. */
  private closingWithStream(original: AnyFunction, state: { active: boolean }): AnyFunction {
    const instrumentation = this;
    return function streamClosingQuery(this: Command, ...args: unknown[]) {
      const stream = original.apply(this, args) as { once?: AnyFunction; destroyed?: boolean };
      if (!state.active) return stream;
      try {
        this[STREAM] = stream;
        stream.once?.('close', () => this[TRACKER]?.finish());
      } catch (error) {
        instrumentation.reportOnce(describeError(error));
      }
      return stream;
    };
  }

  private reportOnce(why: string): void {
    if (this.reported) return;
    this.reported = true;
    reportProblem(
      `mysql2 streamed queries are counted as instrumentation-mysql2 ends them (at the first row, or never when called with values), so their rows and some of the queries are missing (${why}; reported once)`,
    );
  }
}

/** The prototype with query and execute: mysql2's base connection (>= 3.11) or Connection. */
function queryPrototype(Connection: { prototype?: object } | undefined): object | undefined {
  const prototype = Connection?.prototype;
  const base = prototype === undefined ? undefined : (Object.getPrototypeOf(prototype) as { query?: unknown; execute?: unknown } | null);
  return typeof base?.query === 'function' && typeof base.execute === 'function' ? base : prototype;
}

/** No callback anywhere: the caller reads the query's events (or its stream). */
function isEventMode(args: readonly unknown[]): boolean {
  if (args.length === 0 || args.some((arg) => typeof arg === 'function')) return false;
  const first = args[0];
  return !(isCommand(first) && typeof first.onResult === 'function');
}

/** A command with its callback, handed over alone: how a pool runs `pool.query(sql, values, callback)`. */
function isPooledCommand(args: readonly unknown[]): args is [Command] {
  const first = args[0];
  return args.length === 1 && isCommand(first) && typeof first.onResult === 'function';
}

/**
 * query(sql, values) as query({ sql, values }): mysql2 builds the same command from both.
 * execute keeps values given in the options object, as mysql2 does.
 */
function asOneArgument(args: readonly unknown[], isExecute: boolean): unknown[] {
  const [sql, values] = args;
  if (values === undefined || isCommand(sql)) return [sql];
  if (typeof sql === 'string') return [{ sql, values }];
  if (typeof sql === 'object' && sql !== null) {
    const options = sql as { values?: unknown };
    return [{ ...options, values: isExecute ? options.values || values : values }];
  }
  return [...args];
}

function isCommand(value: unknown): value is Command {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Command).execute === 'function' &&
    typeof (value as Command).on === 'function' &&
    typeof (value as Command).rawListeners === 'function'
  );
}

/** INSERT/UPDATE answers are not rows. */
function isResultHeader(value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'affectedRows' in value;
}
