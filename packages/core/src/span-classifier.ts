/**
 * Decides what a finished child span adds to its request's cost, from its kind, name and
 * attributes alone, so the in-process processor and the out-of-process collector agree.
 */
import {
  DB_OPERATION_LEGACY,
  DB_OPERATION_NAME,
  DB_QUERY_TEXT,
  DB_RESPONSE_BYTES,
  DB_RESPONSE_RETURNED_ROWS,
  DB_STATEMENT_LEGACY,
  DB_SYSTEM_LEGACY,
  DB_SYSTEM_NAME,
  HTTP_CLIENT_TIMED,
  HTTP_METHOD_LEGACY,
  HTTP_REQUEST_METHOD,
} from './attributes';

/** Span kinds by name, independent of the OpenTelemetry API's and OTLP's numbering. */
export type SpanKindName = 'internal' | 'server' | 'client' | 'producer' | 'consumer';

/** A read-only view of span attributes, as the SDK and OTLP decoders both provide. */
export type AttributeMap = Readonly<Record<string, unknown>>;

/** One database operation. `statement` is the raw text (fingerprinted by the tally). */
export interface DbOperation {
  readonly type: 'db';
  readonly statement: string;
  /** Rows returned, when the driver hook reported them. */
  readonly rows: number | undefined;
  /** Wire bytes of those rows, when the driver hook reported them. */
  readonly bytes?: number;
}

/** One outgoing HTTP call. `timed` is undefined when no hook could tell. */
export interface HttpClientCall {
  readonly type: 'http_client';
  readonly timed: boolean | undefined;
}

export type CostContribution = DbOperation | HttpClientCall;

// Connection acquisition spans carry the DB system attribute too; they are waits for a
// connection, not queries. Matched by exact name: pg names query spans after the database
// (`pg.query:SELECT connect`), which may well be called "connect".
const CONNECT_SPAN_NAMES = new Set(['pg-pool.connect', 'pg.connect', 'connect']);

/** What the span adds to its request's cost, or undefined when it adds nothing. */
export function classifySpan(kind: SpanKindName, name: string, attributes: AttributeMap): CostContribution | undefined {
  const dbSystem = attributes[DB_SYSTEM_NAME] ?? attributes[DB_SYSTEM_LEGACY];
  if (dbSystem !== undefined) {
    if (CONNECT_SPAN_NAMES.has(name)) return undefined;
    const statement = dbStatementOf(attributes);
    if (statement === undefined) return undefined;
    return { type: 'db', statement, rows: nonNegativeInteger(attributes[DB_RESPONSE_RETURNED_ROWS]), bytes: nonNegativeInteger(attributes[DB_RESPONSE_BYTES]) };
  }
  if (kind === 'client' && (attributes[HTTP_REQUEST_METHOD] ?? attributes[HTTP_METHOD_LEGACY]) !== undefined) {
    const timed = attributes[HTTP_CLIENT_TIMED];
    return { type: 'http_client', timed: typeof timed === 'boolean' ? timed : undefined };
  }
  return undefined;
}

/** The statement text of a DB span, falling back to its operation name. */
function dbStatementOf(attributes: AttributeMap): string | undefined {
  const text = attributes[DB_QUERY_TEXT] ?? attributes[DB_STATEMENT_LEGACY];
  if (typeof text === 'string' && text.length > 0) return text;
  const operation = attributes[DB_OPERATION_NAME] ?? attributes[DB_OPERATION_LEGACY];
  if (typeof operation === 'string' && operation.length > 0) return operation;
  return undefined;
}

function nonNegativeInteger(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value === 'bigint' && value >= 0n) return Number(value);
  return undefined;
}
