/**
 * The auto-instrumentations request-budget installs, configured with the hooks the cost record
 * needs: rows returned for pg and mysql2, timeout detection for outgoing HTTP calls. Each one
 * only patches its library when the app loads it, so listing a library the app does not use
 * costs nothing.
 */
import type { Span } from '@opentelemetry/api';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { ExpressInstrumentation, ExpressLayerType } from '@opentelemetry/instrumentation-express';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { MongoDBInstrumentation } from '@opentelemetry/instrumentation-mongodb';
import { MySQL2Instrumentation } from '@opentelemetry/instrumentation-mysql2';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { DB_RESPONSE_RETURNED_ROWS } from '@request-budget/core';
import { PoolContextInstrumentation } from './pool-context-instrumentation';
import { fetchTimedAttributes, judgeTimeoutListener, outgoingRequestTimedAttributes } from './http-client-timeouts';

/** Names accepted in OTEL_NODE_ENABLED_INSTRUMENTATIONS / OTEL_NODE_DISABLED_INSTRUMENTATIONS. */
export const INSTRUMENTATION_NAMES = ['http', 'express', 'pg', 'mysql2', 'ioredis', 'undici', 'mongodb'] as const;
export type InstrumentationName = (typeof INSTRUMENTATION_NAMES)[number];

/** Settings the instrumentations are created with (from the resolved configuration). */
export interface InstrumentationSettings {
  /** Keep express's per-layer spans (middleware, router, handler). */
  readonly expressLayerSpans: boolean;
  /** instrumentation-pg is installed: it rebinds pool callbacks of callers that have a span. */
  readonly pgInstrumented: boolean;
}

const FACTORIES: Record<InstrumentationName, (settings: InstrumentationSettings) => Instrumentation> = {
  http: () =>
    new HttpInstrumentation({
      startOutgoingSpanHook: outgoingRequestTimedAttributes,
      requestHook: judgeTimeoutListener,
    }),
  // The route template (http.route) comes from express's layers whether or not they get spans;
  // a span per middleware and handler costs every request and adds little beside the server span.
  express: (settings) =>
    new ExpressInstrumentation(
      settings.expressLayerSpans ? {} : { ignoreLayersType: [ExpressLayerType.MIDDLEWARE, ExpressLayerType.ROUTER, ExpressLayerType.REQUEST_HANDLER] },
    ),
  pg: () => new PgInstrumentation({ responseHook: (span, { data }) => recordRows(span, pgRows(data)) }),
  mysql2: () => new MySQL2Instrumentation({ responseHook: (span, { queryResults }) => recordRows(span, mysqlRows(queryResults)) }),
  ioredis: () => new IORedisInstrumentation(),
  undici: () => new UndiciInstrumentation({ startSpanHook: fetchTimedAttributes }),
  mongodb: () => new MongoDBInstrumentation(),
};

/**
 * Creates the named instrumentations, in the order given, plus the pool-context fix whenever a
 * pooled database driver is instrumented (without it, queries under pool contention can be
 * attributed to the wrong request).
 */
export function createInstrumentations(names: readonly InstrumentationName[], options: { expressLayerSpans?: boolean } = {}): Instrumentation[] {
  const settings: InstrumentationSettings = { expressLayerSpans: options.expressLayerSpans ?? false, pgInstrumented: names.includes('pg') };
  const instrumentations = names.map((name) => FACTORIES[name](settings));
  if (names.includes('pg') || names.includes('mysql2')) instrumentations.push(new PoolContextInstrumentation({ pgBindsCallersWithSpan: settings.pgInstrumented }));
  return instrumentations;
}

function recordRows(span: Span, rows: number): void {
  span.setAttribute(DB_RESPONSE_RETURNED_ROWS, rows);
}

/** pg: one result, or an array of results for a multi-statement query. */
function pgRows(data: unknown): number {
  if (Array.isArray(data)) return data.reduce((sum: number, result) => sum + pgRows(result), 0);
  const rows = (data as { rows?: unknown } | undefined)?.rows;
  return Array.isArray(rows) ? rows.length : 0;
}

/**
 * mysql2: an array of rows; for multi-statement queries and CALL, an array of result sets (row
 * arrays) and result headers. Headers (INSERT, UPDATE) return no rows.
 */
function mysqlRows(results: unknown): number {
  if (!Array.isArray(results)) return 0;
  // A row is an object (or, with rowsAsArray, an array of values); a result set is an array
  // of object rows.
  const isResultSet = (item: unknown) => Array.isArray(item) && item.every((row) => typeof row === 'object' && row !== null && !Array.isArray(row));
  const multiple = results.some(isResultHeader) || (results.length > 0 && results.every(isResultSet));
  if (!multiple) return results.length;
  return results.reduce((sum: number, item) => sum + (Array.isArray(item) ? item.length : 0), 0);
}

function isResultHeader(item: unknown): boolean {
  return typeof item === 'object' && item !== null && 'affectedRows' in item;
}
