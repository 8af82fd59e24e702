/**
 * The attribute contract: every name request-budget writes onto a root span, and the
 * span attributes it reads to build the cost record. Dashboards, the collector and the
 * README table are tested against this module, so a rename here is a rename everywhere.
 */

/** DB operations attributed to the request (connection acquisition excluded). Unit: 1. int. */
export const COST_DB_QUERIES = 'cost.db.queries';
/** Sum of the durations of the request's DB operation spans. Unit: ms. double. */
export const COST_DB_TIME_MS = 'cost.db.time_ms';
/** Rows returned by the request's DB operations, where the driver reports them. Unit: 1. int. */
export const COST_DB_ROWS = 'cost.db.rows';
/**
 * Wire bytes of the result rows the request's DB operations returned: the sum of their
 * {@link DB_RESPONSE_BYTES}, the bytes of the same rows `cost.db.rows` counts. Exact whatever runs
 * beside the request. Written only when every operation that reported rows also reported their
 * bytes; otherwise absent, never a lower bound. Unit: bytes. int.
 */
export const COST_DB_BYTES = 'cost.db.bytes';
/** Fingerprint (literals replaced by `?`) of the most repeated statement in the request. string. */
export const COST_DB_REPEATED_STATEMENT = 'cost.db.repeated_statement';
/** How many times the most repeated statement ran in the request (the N+1 figure). int. */
export const COST_DB_REPEATED_COUNT = 'cost.db.repeated_count';
/** Outgoing HTTP calls made by the request. Unit: 1. int. */
export const COST_HTTP_CLIENT_CALLS = 'cost.http_client.calls';
/** Sum of the durations of the request's outgoing HTTP calls. Unit: ms. double. */
export const COST_HTTP_CLIENT_TIME_MS = 'cost.http_client.time_ms';
/** Outgoing HTTP calls made without a timeout or abort signal. Unit: 1. int. */
export const COST_HTTP_CLIENT_UNTIMED = 'cost.http_client.untimed';
/** V8 heap used at the end of the request minus at its start. Unit: bytes. int (may be negative). */
export const COST_HEAP_DELTA_BYTES = 'cost.heap.delta_bytes';
/**
 * Requests (this one included) that were in flight at some moment while this one ran.
 * 1 means the request ran alone, so its heap delta is its own. int.
 */
export const COST_HEAP_IN_FLIGHT = 'cost.heap.in_flight';
/** How far the heap delta can be trusted: see {@link HeapConfidence}. string. */
export const COST_HEAP_CONFIDENCE = 'cost.heap.confidence';
/**
 * Bytes the request's own code allocated on the V8 heap: heap growth measured over each stretch of
 * JavaScript that ran in the request's async context (so requests in flight beside it do not leak
 * in), plus what garbage collections inside those stretches freed, as far as known when the
 * request ended. Work a driver does on its connection's socket (parsing rows) is not in it: see
 * `cost.db.bytes`. Unit: bytes. int.
 */
export const COST_MEMORY_ALLOCATED_BYTES = 'cost.memory.allocated_bytes';
/**
 * The request's route's mean of `cost.memory.allocated_bytes` over its recent requests (this one
 * excluded), with every collection's freed bytes accounted: the figure a memory budget is judged
 * on under load. Absent until the route has enough requests. Unit: bytes. int.
 */
export const COST_MEMORY_ROUTE_ESTIMATE_BYTES = 'cost.memory.route_estimate_bytes';
/** Standard error of `cost.memory.route_estimate_bytes` (its spread over the requests it averages). Unit: bytes. int. */
export const COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES = 'cost.memory.route_estimate_error_bytes';
/**
 * Jobs or messages the request (or job) put on a queue: one per message of each enqueue span (a
 * PRODUCER span with `messaging.system`; a batch counts `messaging.batch.message_count`). The
 * queue library's own work to enqueue them is not in `cost.db.*`. Unit: 1. int.
 */
export const COST_JOBS_ENQUEUED = 'cost.jobs.enqueued';
/** Garbage collections that completed while the request ran. int. */
export const COST_GC_COUNT = 'cost.gc.count';
/** Time spent in those garbage collections. Unit: ms. double. */
export const COST_GC_TIME_MS = 'cost.gc.time_ms';

/** The rule of the budget file that matched the request, e.g. `GET /users/:id`. string. */
export const BUDGET_RULE = 'budget.rule';
/** Whether any limit of the matched rule was exceeded. bool. */
export const BUDGET_BREACHED = 'budget.breached';
/** Every exceeded limit as `metric value>limit`, e.g. `db.queries 41>10`. string[]. */
export const BUDGET_VIOLATIONS = 'budget.violations';
/**
 * Every limit of the matched rule that could not be judged, as `metric: reason`, e.g.
 * `heap.delta_bytes: 8 requests in flight`. A limit is never skipped without a word. string[].
 */
export const BUDGET_UNJUDGED = 'budget.unjudged';
/** Name of the span event written once per violation (attributes: metric, value, limit, severity). */
export const BUDGET_BREACH_EVENT = 'budget.breach';

// ---------------------------------------------------------------------------------------------
// Markers request-budget writes on root spans it opens itself, read in-process and by the collector.

/** Marks a span as a root of its own even when it has a parent: a background job or a measurement. bool. */
export const ROOT_MARKER_ATTRIBUTE = 'request_budget.root';
/** Names a background job on its root span (set by withBudget). string. */
export const JOB_NAME_ATTRIBUTE = 'request_budget.job.name';
/** Which attempt at the job this is, counting from 1: a retried or recovered job runs again. int. */
export const JOB_ATTEMPT_ATTRIBUTE = 'request_budget.job.attempt';
/** Marks a test measurement's root span (measureCost): measured, never judged, counted or alerted on. bool. */
export const MEASUREMENT_ATTRIBUTE = 'request_budget.measurement';

/**
 * Confidence in `cost.heap.delta_bytes`:
 * - `high`: the request ran alone and no GC completed during it: the delta is its own allocation
 *   still reachable or not yet collected.
 * - `medium`: the request ran alone but a GC completed during it: the delta is net of what was
 *   collected, so it understates what the request allocated.
 * - `low`: other requests were in flight at the same time: the delta is shared noise; aggregate
 *   it per route (or use `cost.db.rows`) before acting on it.
 */
export type HeapConfidence = 'high' | 'medium' | 'low';

/** Every attribute written onto a root span by cost attribution, with its OTLP value type. */
export const COST_ATTRIBUTE_TYPES = {
  [COST_DB_QUERIES]: 'int',
  [COST_DB_TIME_MS]: 'double',
  [COST_DB_ROWS]: 'int',
  [COST_DB_BYTES]: 'int',
  [COST_DB_REPEATED_STATEMENT]: 'string',
  [COST_DB_REPEATED_COUNT]: 'int',
  [COST_HTTP_CLIENT_CALLS]: 'int',
  [COST_HTTP_CLIENT_TIME_MS]: 'double',
  [COST_HTTP_CLIENT_UNTIMED]: 'int',
  [COST_JOBS_ENQUEUED]: 'int',
  [COST_HEAP_DELTA_BYTES]: 'int',
  [COST_HEAP_IN_FLIGHT]: 'int',
  [COST_HEAP_CONFIDENCE]: 'string',
  [COST_MEMORY_ALLOCATED_BYTES]: 'int',
  [COST_MEMORY_ROUTE_ESTIMATE_BYTES]: 'int',
  [COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES]: 'int',
  [COST_GC_COUNT]: 'int',
  [COST_GC_TIME_MS]: 'double',
} as const;

/**
 * Attributes of {@link COST_ATTRIBUTE_TYPES} a cost record may lack: `cost.db.bytes` when an
 * operation reported rows without their bytes, the request's own memory figure when it was not
 * measured (outside a sampling window, or attribution off), the route's estimate until the route
 * has one.
 */
export const OPTIONAL_COST_ATTRIBUTES: ReadonlySet<string> = new Set([
  COST_DB_BYTES,
  COST_MEMORY_ALLOCATED_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES,
]);

// ---------------------------------------------------------------------------------------------
// Attributes read from child spans. Stable database/HTTP semantic conventions first, with the
// pre-1.26 names as fallbacks so spans from older SDKs in other languages still count.

/** Stable DB semconv: the database system, e.g. `postgresql`. */
export const DB_SYSTEM_NAME = 'db.system.name';
/** Deprecated spelling of {@link DB_SYSTEM_NAME}. */
export const DB_SYSTEM_LEGACY = 'db.system';
/** Stable DB semconv: the statement text. */
export const DB_QUERY_TEXT = 'db.query.text';
/** Deprecated spelling of {@link DB_QUERY_TEXT}. */
export const DB_STATEMENT_LEGACY = 'db.statement';
/** Stable DB semconv: operation name, e.g. `SELECT`, `get`, `find`. */
export const DB_OPERATION_NAME = 'db.operation.name';
/** Deprecated spelling of {@link DB_OPERATION_NAME}. */
export const DB_OPERATION_LEGACY = 'db.operation';
/** DB semconv: rows returned by the operation. request-budget's driver hooks set it. */
export const DB_RESPONSE_RETURNED_ROWS = 'db.response.returned_rows';
/**
 * Wire bytes of the rows one DB operation returned, as the server sent them; request-budget's
 * driver hooks set it beside {@link DB_RESPONSE_RETURNED_ROWS}, for the same rows. What is counted:
 * - pg and postgres.js (PostgreSQL protocol): each DataRow message whole, 1 type byte + 4 length +
 *   2 field count + per field 4 length bytes and the value as sent (text, or binary where the
 *   query asked for it; a NULL is its length of -1 alone). Row descriptions, command tags and
 *   ReadyForQuery are not rows. Not reported by pg-native, nor by postgres.js unless loaded
 *   through the ES module loader hook (`--import @request-budget/node/register`).
 * - mysql2 (MySQL/MariaDB protocol): each row packet, 4 header bytes + payload: the text
 *   protocol's length-encoded values (a NULL is 1 byte) for `query`, the binary protocol's
 *   header byte, NULL bitmap and values for `execute`; a row over 16 MiB is several packets, each
 *   with its header. Column definitions and the closing EOF/OK packet are not rows. Compressed
 *   connections count the packets before compression.
 * Unit: bytes. int.
 */
export const DB_RESPONSE_BYTES = 'request_budget.db.response_bytes';
/** HTTP semconv: request method, present on HTTP client spans. */
export const HTTP_REQUEST_METHOD = 'http.request.method';
/** Deprecated spelling of {@link HTTP_REQUEST_METHOD}. */
export const HTTP_METHOD_LEGACY = 'http.method';
/** HTTP semconv: the full URL of an outgoing call. */
export const URL_FULL = 'url.full';
/** Deprecated spelling of {@link URL_FULL}. */
export const HTTP_URL_LEGACY = 'http.url';
/** Messaging semconv: the messaging system of a producer or consumer span, e.g. `rabbitmq`. */
export const MESSAGING_SYSTEM = 'messaging.system';
/** Messaging semconv: how many messages one producer span sent (absent: one). */
export const MESSAGING_BATCH_MESSAGE_COUNT = 'messaging.batch.message_count';
/** Messaging semconv: the queue or topic a message was sent to or received from. */
export const MESSAGING_DESTINATION_NAME = 'messaging.destination.name';
/** HTTP semconv: the route template of a server span, e.g. `/users/:id`. */
export const HTTP_ROUTE = 'http.route';
/**
 * Written by request-budget's HTTP client hooks onto each outgoing call's span: whether the call
 * had a timeout (or an abort signal). Absent means unknown, which never counts as untimed.
 */
export const HTTP_CLIENT_TIMED = 'request_budget.http_client.timed';
/**
 * Written beside {@link HTTP_CLIENT_TIMED} when the delay is known: the timeout, in ms, that
 * protects the outgoing call — its abort signal's delay, or the timeout of the client (socket
 * inactivity, undici's headers/body timeouts: the longer of the two, got's request timeout).
 * With several, the shortest. A call whose timeout is longer than the configured ceiling
 * (`maxClientTimeoutMs`) carries it with `timed` false. Unit: ms. int.
 */
export const HTTP_CLIENT_TIMEOUT_MS = 'request_budget.http_client.timeout_ms';
