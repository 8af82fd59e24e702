/**
 * One operation seen by two spans, one inside the other: a query builder's or ORM's span over its
 * driver's (instrumentation-knex over instrumentation-pg, Prisma's `prisma:client:db_query` over
 * the pg driver adapter's query), or two instances of one instrumentation nested (http patched
 * twice). The cost record counts such an operation once: the innermost span, the driver's, which
 * carries the statement as the server ran it and the rows.
 *
 * Judged from what a span carries when it starts (instrumentation-pg sets the statement later),
 * so only the database system and the HTTP method and URL are compared.
 */
import { DB_SYSTEM_LEGACY, DB_SYSTEM_NAME, HTTP_METHOD_LEGACY, HTTP_REQUEST_METHOD, HTTP_URL_LEGACY, URL_FULL } from './attributes';
import type { AttributeMap, SpanKindName } from './span-classifier';

/** What kind of operation a span reports, as far as nesting is concerned. */
export type OperationIdentity =
  { readonly type: 'db'; readonly system: string } | { readonly type: 'http_client'; readonly method: string; readonly url: string | undefined };

// Connection acquisition spans carry the DB system too, but wrap no statement of their own.
const CONNECT_SPAN_NAMES = new Set(['pg-pool.connect', 'pg.connect', 'connect']);

// Spellings of one system by different instrumentations: instrumentation-knex names the system
// after Knex's client (`mysql2`, `better-sqlite3`, …) but for pg and sqlite3; drivers use semconv.
const SYSTEM_ALIASES: Readonly<Record<string, string>> = {
  postgres: 'postgresql',
  pg: 'postgresql',
  pgnative: 'postgresql',
  cockroachdb: 'postgresql',
  redshift: 'postgresql',
  mysql2: 'mysql',
  mariadb: 'mysql',
  'better-sqlite3': 'sqlite',
  sqlite3: 'sqlite',
  tedious: 'mssql',
  oracledb: 'oracle',
};

/** The operation a span reports, or undefined when it reports none (or only a connection). */
export function operationIdentity(kind: SpanKindName, name: string, attributes: AttributeMap): OperationIdentity | undefined {
  const system = attributes[DB_SYSTEM_NAME] ?? attributes[DB_SYSTEM_LEGACY];
  if (typeof system === 'string' && system.length > 0) {
    if (CONNECT_SPAN_NAMES.has(name)) return undefined;
    const lower = system.toLowerCase();
    return { type: 'db', system: SYSTEM_ALIASES[lower] ?? lower };
  }
  const method = attributes[HTTP_REQUEST_METHOD] ?? attributes[HTTP_METHOD_LEGACY];
  if (kind === 'client' && typeof method === 'string') {
    const url = attributes[URL_FULL] ?? attributes[HTTP_URL_LEGACY];
    return { type: 'http_client', method: method.toUpperCase(), url: typeof url === 'string' ? url : undefined };
  }
  return undefined;
}

/**
 * Whether `inner`, started under `outer`, reports the same operation: a DB span under a DB span
 * of the same system, or an HTTP client span under one with the same method (and URL, when both
 * carry one). An HTTP call makes no HTTP call of its own, nor a query another query.
 */
export function sameOperation(outer: OperationIdentity, inner: OperationIdentity): boolean {
  if (outer.type === 'db') return inner.type === 'db' && inner.system === outer.system;
  if (inner.type !== 'http_client' || inner.method !== outer.method) return false;
  return outer.url === undefined || inner.url === undefined || outer.url === inner.url;
}

/** A string equal for two spans of one operation started side by side, e.g. two undici spans. */
export function operationKey(identity: OperationIdentity): string {
  return identity.type === 'db' ? `db ${identity.system}` : `http ${identity.method} ${identity.url ?? ''}`;
}

/** A span of a whole trace where its parent is: its id and its parent's. */
export interface LinkedSpan {
  readonly spanId: string;
  /** Empty or undefined for a span without a parent. */
  readonly parentSpanId: string | undefined;
}

/** A span of a whole trace, as an out-of-process consumer (the collector) has it. */
export interface LinkedOperationSpan extends LinkedSpan {
  readonly identity: OperationIdentity | undefined;
}

/**
 * The spans of a whole trace that report an operation one of their descendants reports too: not
 * to be counted, as the descendant is. Spans in between that report nothing (an ORM's operation
 * span, a transaction span) are looked through. `identityOf`: where a span keeps its identity, for
 * callers whose spans keep it elsewhere than `identity` (no copy of each span needed).
 */
export function outerDuplicateSpanIds(spans: readonly LinkedOperationSpan[]): Set<string>;
export function outerDuplicateSpanIds<Span extends LinkedSpan>(spans: readonly Span[], identityOf: (span: Span) => OperationIdentity | undefined): Set<string>;
export function outerDuplicateSpanIds<Span extends LinkedSpan>(
  spans: readonly Span[],
  identityOf: (span: Span) => OperationIdentity | undefined = ownIdentity,
): Set<string> {
  const byId = new Map<string, Span>();
  for (const span of spans) byId.set(span.spanId, span);
  const outer = new Set<string>();
  for (const span of spans) {
    const identity = identityOf(span);
    if (identity === undefined) continue;
    const enclosing = nearestOperationAncestor(span, byId, identityOf);
    if (enclosing !== undefined && sameOperation(identityOf(enclosing)!, identity)) outer.add(enclosing.spanId);
  }
  return outer;
}

const ownIdentity = (span: LinkedSpan): OperationIdentity | undefined => (span as LinkedOperationSpan).identity;

function nearestOperationAncestor<Span extends LinkedSpan>(
  span: Span,
  byId: ReadonlyMap<string, Span>,
  identityOf: (span: Span) => OperationIdentity | undefined,
): Span | undefined {
  // A walk longer than the trace has spans is going round a cycle (a malformed trace).
  let steps = 0;
  for (let parentId = span.parentSpanId; parentId; steps += 1) {
    if (steps >= byId.size) return undefined;
    // Round to itself (or to another copy of its id, which byId may hold instead).
    if (parentId === span.spanId) return undefined;
    const parent = byId.get(parentId);
    if (parent === undefined) return undefined;
    if (identityOf(parent) !== undefined) return parent;
    parentId = parent.parentSpanId;
  }
  return undefined;
}
