/**
 * The auto-instrumentations request-budget installs, configured with the hooks the cost record
 * needs: rows returned for pg and mysql2, timeout detection for outgoing HTTP calls. Each one
 * only patches its library when the app loads it, so listing a library the app does not use
 * costs nothing.
 */
import type { Span } from '@opentelemetry/api';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { MongoDBInstrumentation } from '@opentelemetry/instrumentation-mongodb';
import { MySQL2Instrumentation } from '@opentelemetry/instrumentation-mysql2';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { DB_RESPONSE_RETURNED_ROWS } from '@request-budget/core';
import { PoolContextInstrumentation } from './pool-context-instrumentation';
import { fetchTimedAttributes, outgoingRequestTimedAttributes, watchSetTimeout } from './http-client-timeouts';

/** Names accepted in OTEL_NODE_ENABLED_INSTRUMENTATIONS / OTEL_NODE_DISABLED_INSTRUMENTATIONS. */
export const INSTRUMENTATION_NAMES = ['http', 'express', 'pg', 'mysql2', 'ioredis', 'undici', 'mongodb'] as const;
export type InstrumentationName = (typeof INSTRUMENTATION_NAMES)[number];

const FACTORIES: Record<InstrumentationName, () => Instrumentation> = {
  http: () =>
    new HttpInstrumentation({
      startOutgoingSpanHook: outgoingRequestTimedAttributes,
      requestHook: watchSetTimeout,
    }),
  express: () => new ExpressInstrumentation(),
  pg: () => new PgInstrumentation({ responseHook: (span, { data }) => recordRows(span, data?.rows) }),
  mysql2: () => new MySQL2Instrumentation({ responseHook: (span, { queryResults }) => recordRows(span, queryResults) }),
  ioredis: () => new IORedisInstrumentation(),
  undici: () => new UndiciInstrumentation({ startSpanHook: fetchTimedAttributes }),
  mongodb: () => new MongoDBInstrumentation(),
};

/**
 * Creates the named instrumentations, in the order given, plus the pool-context fix whenever a
 * pooled database driver is instrumented (without it, queries under pool contention can be
 * attributed to the wrong request).
 */
export function createInstrumentations(names: readonly InstrumentationName[]): Instrumentation[] {
  const instrumentations = names.map((name) => FACTORIES[name]());
  if (names.includes('pg') || names.includes('mysql2')) instrumentations.push(new PoolContextInstrumentation());
  return instrumentations;
}

/** Result sets are arrays of rows; anything else (an INSERT's header, say) returned none. */
function recordRows(span: Span, rows: unknown): void {
  span.setAttribute(DB_RESPONSE_RETURNED_ROWS, Array.isArray(rows) ? rows.length : 0);
}
