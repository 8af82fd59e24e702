/**
 * OpenTelemetry instrumentation for postgres.js (the `postgres` package, 4.x), which has none
 * upstream: one CLIENT span per query, with the stable database semantic conventions and the
 * rows the query returned (`db.response.returned_rows`), so cost attribution counts it, with
 * their wire bytes where its protocol module could be patched (see postgres-js-row-bytes.ts).
 *
 * The spans come from postgres.js's own `postgres:query` tracing channel: it publishes the start
 * of every query the app runs (awaited, `.execute()`d, `.forEach()`, `.cursor()`, `.simple()`,
 * `unsafe`, `file`, and the BEGIN/COMMIT/SAVEPOINT of `sql.begin`, which are statements the
 * server runs, as instrumentation-pg counts `client.query('BEGIN')`), from the async context of
 * the code that started it, and its completion with the text as sent, the server, the command
 * tag and its row count. Starting the span there charges each query to the request that made it,
 * even when it waits behind others for one of the pool's connections. The channel works however
 * the app loads postgres.js (require or import, before or after this starts); patching its Query
 * class adds what the channel lacks: the rows of every batch of a cursor, and the statements of
 * `sql.batch`.
 */
import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  safeExecuteInTheMiddle,
} from '@opentelemetry/instrumentation';
import { DB_RESPONSE_BYTES, DB_RESPONSE_RETURNED_ROWS } from '@request-budget/core';
import diagnosticsChannel from 'node:diagnostics_channel';
import { describeError, reportProblem } from '../diagnostics';
import {
  describeBatch,
  describeBatchResult,
  describeStatement,
  errorAttributes,
  errorMessage,
  namespaceOf,
  queryAttributes,
  returnedRows,
  serverAttributes,
  spanNameOf,
  type QueryDescription,
} from './postgres-js-attributes';
import {
  batchTexts,
  countCursorBatches,
  exposeRunningQuery,
  hideRunningQuery,
  queryPrototypeOf,
  runningQuery,
  type PostgresJsQuery,
} from './postgres-js-running-query';
import { measureRowMessages, rowBytesOf, stopMeasuringRowMessages, watchRowBytes, type RowBytesCount } from './postgres-js-row-bytes';
import type { PostgresJsInstrumentationConfig, PostgresJsQueryTrace } from './postgres-js-types';

export type { PostgresJsInstrumentationConfig, PostgresJsResponseInfo } from './postgres-js-types';

const INSTRUMENTATION_NAME = '@request-budget/instrumentation-postgres-js';
const INSTRUMENTATION_VERSION = '0.1.0';
/** The tracing channel postgres.js 4 publishes each query on. */
export const POSTGRES_JS_QUERY_CHANNEL = 'postgres:query';

/** A query between its start and its completion. */
interface QueryInFlight {
  readonly span: Span;
  readonly namespace: string | undefined;
  description: QueryDescription;
  /** Rows of the batches a cursor handed to the app; undefined when the query is no cursor. */
  cursorRows: number | undefined;
  /** The DataRow messages it claimed; undefined when they are not measured. */
  readonly rowBytes: RowBytesCount | undefined;
}

// Node subscribes only the handlers given; the type asks for all five.
type TracingHandlers = Parameters<diagnosticsChannel.TracingChannel<unknown, object>['subscribe']>[0];

export class PostgresJsInstrumentation extends InstrumentationBase<PostgresJsInstrumentationConfig> {
  // Declared, not initialised: the base constructor calls enable() before field initialisers run.
  declare private handlers: TracingHandlers | undefined;
  declare private inFlight: WeakMap<object, QueryInFlight> | undefined;
  declare private queryPrototype: object | undefined;
  declare private patchFailed: boolean | undefined;
  declare private reported: Set<string> | undefined;

  constructor(config: PostgresJsInstrumentationConfig = {}) {
    super(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION, config);
  }

  // Only 4.x: older versions have no query channel. library-coverage.ts reads this range and
  // tells the user when the app loads a version outside it.
  protected init() {
    return [
      new InstrumentationNodeModuleDefinition(
        'postgres',
        ['>=4 <5'],
        (moduleExports: unknown) => this.patchQueryClass(moduleExports),
        () => this.unpatchQueryClass(),
        // Reached only through the ES module loader hook: postgres.js imports it as an ES module.
        [
          new InstrumentationNodeModuleFile(
            'postgres/src/protocol.js',
            ['>=4 <5'],
            (protocol: unknown) => {
              try {
                if (!measureRowMessages(protocol)) throw new Error('its protocol module has no Frames function');
              } catch (error) {
                this.reportOnce('frames', `postgres.js rows are counted without their wire bytes (${describeError(error)})`);
              }
              return protocol;
            },
            (protocol: unknown) => stopMeasuringRowMessages(protocol),
          ),
        ],
      ),
    ];
  }

  override enable(): void {
    super.enable();
    if (this.handlers !== undefined) return;
    this.inFlight ??= new WeakMap();
    const handlers = {
      start: (message: object) => this.onStart(message as PostgresJsQueryTrace),
      asyncStart: (message: object) => this.onSettled(message as PostgresJsQueryTrace),
    } as Partial<TracingHandlers> as TracingHandlers;
    diagnosticsChannel.tracingChannel(POSTGRES_JS_QUERY_CHANNEL).subscribe(handlers);
    this.handlers = handlers;
  }

  override disable(): void {
    super.disable();
    if (this.handlers === undefined) return;
    diagnosticsChannel.tracingChannel(POSTGRES_JS_QUERY_CHANNEL).unsubscribe(this.handlers);
    this.handlers = undefined;
  }

  /** Patches postgres.js's Query class (reached through the module's default export). */
  private patchQueryClass(moduleExports: unknown): unknown {
    try {
      this.queryPrototype ??= queryPrototypeOf(moduleExports);
      if (!exposeRunningQuery(this.queryPrototype)) throw new Error('its Query class has no run() method');
    } catch (error) {
      this.patchFailed = true;
      this.reportOnce(
        'patch',
        `could not patch postgres.js (${describeError(error)}): its queries are still counted, but a .cursor() query counts only the rows of its last batch and sql.batch() shows no statement text`,
      );
    }
    return moduleExports;
  }

  private unpatchQueryClass(): void {
    try {
      hideRunningQuery(this.queryPrototype);
    } catch (error) {
      this.reportOnce('unpatch', `could not unpatch postgres.js: ${describeError(error)}`);
    }
  }

  /** A query starts, synchronously inside `run()`, in the async context of the code that started it. */
  private onStart(queryTrace: PostgresJsQueryTrace): void {
    try {
      const query = runningQuery();
      if (query !== undefined && queryTrace.query === '') return untrace(query);
      const parent = context.active();
      if (this.getConfig().requireParentSpan === true && trace.getSpan(parent) === undefined) return;
      if (query === undefined) this.reportUnpatched();
      const texts = query === undefined ? undefined : batchTexts(query);
      const description = texts === undefined ? describeStatement(queryTrace.query) : describeBatch(texts, (query!.parts as unknown[]).length);
      const namespace = namespaceOf(queryTrace);
      const span = this.tracer.startSpan(
        spanNameOf(description.operation, namespace),
        { kind: SpanKind.CLIENT, attributes: queryAttributes(description, namespace) },
        parent,
      );
      const cursor = query !== undefined && typeof query.cursorFn === 'function';
      const rowBytes = query === undefined ? undefined : watchRowBytes(query);
      const inFlight: QueryInFlight = { span, namespace, description, cursorRows: cursor ? 0 : undefined, rowBytes };
      this.inFlight!.set(queryTrace, inFlight);
      // The server's count for a cursor is that of its last batch only.
      if (cursor) countCursorBatches(query, (rows) => (inFlight.cursorRows = (inFlight.cursorRows ?? 0) + rows));
    } catch (error) {
      this.reportOnce('start', `postgres.js query span not started (reported once): ${describeError(error)}`);
    }
  }

  /** The query resolved or rejected: `result` or `error` is set on the trace context by now. */
  private onSettled(queryTrace: PostgresJsQueryTrace): void {
    const inFlight = this.inFlight?.get(queryTrace);
    if (inFlight === undefined) return;
    this.inFlight!.delete(queryTrace);
    const { span } = inFlight;
    try {
      const description = settledDescription(inFlight.description, queryTrace);
      if (description !== inFlight.description) {
        span.setAttributes(queryAttributes(description, inFlight.namespace));
        span.updateName(spanNameOf(description.operation, inFlight.namespace));
      }
      span.setAttributes(serverAttributes(queryTrace));
      const failed = queryTrace.error !== undefined;
      const rows = inFlight.cursorRows ?? returnedRows(queryTrace.result);
      if (failed) {
        span.setAttributes(errorAttributes(queryTrace.error));
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(queryTrace.error) });
      } else {
        span.setAttribute(DB_RESPONSE_RETURNED_ROWS, rows);
        const bytes = rowBytesOf(inFlight.rowBytes, rows);
        if (bytes !== undefined) span.setAttribute(DB_RESPONSE_BYTES, bytes);
      }
      this.callResponseHook(span, queryTrace, rows);
    } catch (error) {
      this.reportOnce('settled', `postgres.js query span incomplete (reported once): ${describeError(error)}`);
    } finally {
      span.end();
    }
  }

  private callResponseHook(span: Span, queryTrace: PostgresJsQueryTrace, rows: number): void {
    const { responseHook } = this.getConfig();
    if (typeof responseHook !== 'function') return;
    const info = { command: queryTrace.command ?? null, rows, result: queryTrace.result, error: queryTrace.error };
    safeExecuteInTheMiddle(
      () => responseHook(span, info),
      (error) => {
        if (error) this.reportOnce('responseHook', `the postgres.js responseHook threw (reported once): ${describeError(error)}`);
      },
      true,
    );
  }

  /** Queries seen without the Query class patched, and no failed attempt to say why. */
  private reportUnpatched(): void {
    if (this.queryPrototype !== undefined || this.patchFailed === true) return;
    this.reportOnce(
      'unpatched',
      "postgres.js was loaded without request-budget's module hook (before request-budget started, or imported as an ES module without --import): its queries are counted, but a .cursor() query counts only the rows of its last batch; start the app with node --require @request-budget/node/register (CommonJS) or --import @request-budget/node/register (ES modules)",
    );
  }

  private reportOnce(key: string, message: string): void {
    this.reported ??= new Set();
    if (this.reported.has(key)) return;
    this.reported.add(key);
    reportProblem(message);
  }
}

/**
 * What the span says once the query settled: the text as sent where it differs from the one
 * known at the start (`sql.file` reads its text only then), or a batch recognised by its result.
 */
function settledDescription(atStart: QueryDescription, queryTrace: PostgresJsQueryTrace): QueryDescription {
  if (atStart.batchSize !== undefined) return atStart;
  const sent = typeof queryTrace.query === 'string' && queryTrace.query.length > 0 ? queryTrace.query : undefined;
  if (sent === undefined) return (atStart.text === undefined ? describeBatchResult(queryTrace.result) : undefined) ?? atStart;
  return sent === atStart.text ? atStart : describeStatement(sent);
}

/**
 * postgres.js 4.2 fails an empty simple query (`sql.unsafe('')`) with a TypeError whenever its
 * query channel has a subscriber (it reads the missing statement's text to publish it), where it
 * would otherwise resolve with an empty result. The server runs nothing for it either, so it
 * gets no span and is untraced, as it would be without a subscriber.
 */
function untrace(query: PostgresJsQuery): void {
  (query as { trace?: unknown }).trace = null;
}
