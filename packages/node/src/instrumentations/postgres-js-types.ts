/**
 * Configuration of the postgres.js instrumentation, and the shape of the trace context
 * postgres.js publishes for each query.
 */
import type { Span } from '@opentelemetry/api';
import type { InstrumentationConfig } from '@opentelemetry/instrumentation';

/** What {@link PostgresJsInstrumentationConfig.responseHook} is told about a finished query. */
export interface PostgresJsResponseInfo {
  /** The command tag the server completed with, e.g. `SELECT`; null when it failed or sent none. */
  readonly command: string | null;
  /** Rows the query returned (summed over a cursor's batches and a multi-statement query's results). */
  readonly rows: number;
  /** What the query resolved with (a postgres.js Result, or an array of them); undefined on failure. */
  readonly result: unknown;
  /** What the query rejected with; undefined on success. */
  readonly error: unknown;
}

export interface PostgresJsInstrumentationConfig extends InstrumentationConfig {
  /**
   * Only create spans for queries made while another span is active (a request, a job).
   * Queries from background work then make no spans at all.
   *
   * @default false
   */
  requireParentSpan?: boolean;
  /**
   * Called with each query span just before it ends, to add attributes of your own. It never
   * sees parameter values. An exception it throws is reported once and otherwise ignored.
   *
   * @default undefined
   */
  responseHook?: (span: Span, info: PostgresJsResponseInfo) => void;
}

/**
 * The context object postgres.js 4 publishes on its `postgres:query` tracing channel: one per
 * query execution, filled in as the query is sent and completed. Only the fields read here.
 */
export interface PostgresJsQueryTrace {
  /** Statement text as sent (parameterised: `$1` placeholders), or null before it is built. */
  query: string | null;
  database?: string | null;
  host?: string | null;
  port?: number | null;
  command?: string | null;
  count?: number | null;
  /** Set when the query resolved. */
  result?: unknown;
  /** Set when the query rejected. */
  error?: unknown;
}
