/**
 * Traces built by hand, as SDKs of other languages send them: plain OpenTelemetry spans (no
 * cost.* attributes), encoded as OTLP/JSON and as OTLP protobuf (with the official schema).
 */
import { randomBytes } from 'node:crypto';
import { ExportTraceServiceRequest } from '../../../test/support/otlp-schema';

export const Kind = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

export interface SyntheticSpan {
  readonly service: string;
  readonly name: string;
  readonly kind: number;
  readonly spanId: string;
  readonly parentSpanId?: string;
  /** Offsets from the trace's start, in microseconds (exact). */
  readonly startUs: number;
  readonly endUs: number;
  readonly attributes?: Record<string, string | number | boolean>;
  readonly flags?: number;
}

export interface SyntheticTrace {
  readonly traceId: string;
  readonly baseNs: bigint;
  readonly spans: readonly SyntheticSpan[];
}

export const newSpanId = (): string => randomBytes(8).toString('hex');
export const newTraceId = (): string => randomBytes(16).toString('hex');

const SERVICE_RESOURCES: Record<string, Record<string, string | number>> = {
  'orders-py': { 'service.name': 'orders-py', 'telemetry.sdk.language': 'python', 'telemetry.sdk.name': 'opentelemetry', 'process.pid': 4242 },
  'inventory-go': { 'service.name': 'inventory-go', 'telemetry.sdk.language': 'go', 'telemetry.sdk.name': 'opentelemetry', 'process.pid': 77 },
};

function jsonValue(value: string | number | boolean): Record<string, unknown> {
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  return Number.isInteger(value) ? { intValue: String(value) } : { doubleValue: value };
}

const jsonAttributes = (attributes: Record<string, string | number | boolean> = {}) =>
  Object.entries(attributes).map(([key, value]) => ({ key, value: jsonValue(value) }));

/** The trace as an OTLP/JSON ExportTraceServiceRequest (hex ids, int64 as text). */
export function toOtlpJson(trace: SyntheticTrace): Record<string, unknown> {
  const services = [...new Set(trace.spans.map((span) => span.service))];
  return {
    resourceSpans: services.map((service) => ({
      resource: { attributes: jsonAttributes(SERVICE_RESOURCES[service] ?? { 'service.name': service }) },
      scopeSpans: [
        {
          scope: { name: `synthetic.${service}`, version: '1.0.0' },
          spans: trace.spans
            .filter((span) => span.service === service)
            .map((span) => ({
              traceId: trace.traceId,
              spanId: span.spanId,
              ...(span.parentSpanId !== undefined ? { parentSpanId: span.parentSpanId } : {}),
              ...(span.flags !== undefined ? { flags: span.flags } : {}),
              name: span.name,
              kind: span.kind,
              startTimeUnixNano: String(trace.baseNs + BigInt(span.startUs) * 1000n),
              endTimeUnixNano: String(trace.baseNs + BigInt(span.endUs) * 1000n),
              attributes: jsonAttributes(span.attributes),
              status: {},
            })),
        },
      ],
    })),
  };
}

/** The trace as OTLP protobuf, encoded with the official schema. */
export function toOtlpProtobuf(trace: SyntheticTrace): Uint8Array {
  const json = toOtlpJson(trace) as { resourceSpans: { scopeSpans: { spans: Record<string, unknown>[] }[] }[] };
  for (const resourceSpans of json.resourceSpans) {
    for (const scopeSpans of resourceSpans.scopeSpans) {
      for (const span of scopeSpans.spans) {
        for (const key of ['traceId', 'spanId', 'parentSpanId']) if (typeof span[key] === 'string') span[key] = Buffer.from(span[key] as string, 'hex');
      }
    }
  }
  return ExportTraceServiceRequest.encode(ExportTraceServiceRequest.fromObject(json)).finish();
}

/** POSTs a body to an OTLP/HTTP traces URL. */
export function postOtlp(url: string, body: Uint8Array | string, contentType: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', body, headers: { 'content-type': contentType, ...headers }, signal: AbortSignal.timeout(10_000) });
}

/**
 * An "orders" request in Python: a SERVER root with a remote parent, pg-like DB spans (one N+1
 * loop with inlined literals, a legacy-attribute query, a connect span that is not a query, one
 * query under an INTERNAL span, one that ends after the response), an outgoing HTTP call to an
 * inventory service in Go — whose own SERVER span and query are its cost, not the order's — and a
 * stray span of no request.
 *
 * The order root's cost: 6 queries, 1.5 + 3 × 2.25 + 0.5 + 1.0 = 9.75 ms, 1 + 3 × 2 + 4 = 11 rows,
 * `SELECT * FROM items WHERE order_id = ?` 3 times, 1 HTTP call of 10 ms.
 * The inventory root's: 1 query of 0.75 ms, 5 rows.
 */
/** The cost record the collector must derive for the order root of {@link ordersTrace} (worked out above). */
export const ORDERS_ROOT_COST = {
  'cost.db.queries': 6,
  'cost.db.time_ms': 9.75,
  'cost.db.rows': 11,
  'cost.db.repeated_count': 3,
  'cost.db.repeated_statement': 'SELECT * FROM items WHERE order_id = ?',
  'cost.http_client.calls': 1,
  'cost.http_client.time_ms': 10,
  'cost.http_client.untimed': 0,
  'cost.jobs.enqueued': 0,
} as const;

export function ordersTrace(): SyntheticTrace & { readonly rootId: string; readonly inventoryRootId: string } {
  const traceId = newTraceId();
  const rootId = newSpanId();
  const renderId = newSpanId();
  const httpId = newSpanId();
  const inventoryRootId = newSpanId();
  const pg = (statement: string, startUs: number, durationUs: number, rows?: number, parent = rootId): SyntheticSpan => ({
    service: 'orders-py',
    name: statement.split(' ')[0]!,
    kind: Kind.CLIENT,
    spanId: newSpanId(),
    parentSpanId: parent,
    startUs,
    endUs: startUs + durationUs,
    attributes: { 'db.system.name': 'postgresql', 'db.query.text': statement, ...(rows !== undefined ? { 'db.response.returned_rows': rows } : {}) },
  });
  const spans: SyntheticSpan[] = [
    {
      service: 'orders-py',
      name: 'GET /orders/{order_id}',
      kind: Kind.SERVER,
      spanId: rootId,
      parentSpanId: newSpanId(), // the caller's span: not in this trace's spans
      startUs: 0,
      endUs: 50_000,
      attributes: { 'http.request.method': 'GET', 'http.route': '/orders/{order_id}', 'http.response.status_code': 200, 'url.path': '/orders/7' },
    },
    {
      service: 'orders-py',
      name: 'connect',
      kind: Kind.CLIENT,
      spanId: newSpanId(),
      parentSpanId: rootId,
      startUs: 100,
      endUs: 900,
      attributes: { 'db.system.name': 'postgresql' },
    },
    pg('SELECT * FROM orders WHERE id = 7', 1000, 1500, 1),
    pg('SELECT * FROM items WHERE order_id = 1', 3000, 2250, 2),
    pg('SELECT * FROM items WHERE order_id = 2', 6000, 2250, 2),
    pg('SELECT * FROM items WHERE order_id = 3', 9000, 2250, 2),
    {
      service: 'orders-py',
      name: 'SELECT',
      kind: Kind.CLIENT,
      spanId: newSpanId(),
      parentSpanId: rootId,
      startUs: 12_000,
      endUs: 12_500,
      attributes: { 'db.system': 'postgresql', 'db.statement': 'SELECT count(*) FROM audit' },
    },
    { service: 'orders-py', name: 'render', kind: Kind.INTERNAL, spanId: renderId, parentSpanId: rootId, startUs: 13_000, endUs: 20_000 },
    pg('SELECT * FROM prices WHERE sku IN (1, 2, 3)', 14_000, 1000, 4, renderId),
    {
      service: 'orders-py',
      name: 'GET',
      kind: Kind.CLIENT,
      spanId: httpId,
      parentSpanId: rootId,
      startUs: 21_000,
      endUs: 31_000,
      attributes: { 'http.request.method': 'GET', 'url.full': 'http://inventory/stock/42', 'http.response.status_code': 200 },
    },
    {
      service: 'inventory-go',
      name: 'GET /stock/{sku}',
      kind: Kind.SERVER,
      spanId: inventoryRootId,
      parentSpanId: httpId,
      startUs: 22_000,
      endUs: 30_000,
      attributes: { 'http.request.method': 'GET', 'http.route': '/stock/{sku}' },
      flags: 0x301,
    },
    {
      service: 'inventory-go',
      name: 'SELECT stock',
      kind: Kind.CLIENT,
      spanId: newSpanId(),
      parentSpanId: inventoryRootId,
      startUs: 23_000,
      endUs: 23_750,
      attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT qty FROM stock WHERE sku = $1', 'db.response.returned_rows': 5 },
      flags: 0x101,
    },
    // Ends after the response was sent: not the request's cost, as in-process.
    pg('INSERT INTO audit VALUES (7)', 49_000, 3000, undefined),
    // No local root above it.
    { service: 'orders-py', name: 'cleanup', kind: Kind.INTERNAL, spanId: newSpanId(), parentSpanId: newSpanId(), startUs: 60_000, endUs: 61_000 },
  ];
  return { traceId, baseNs: BigInt(Date.now() - 1000) * 1_000_000n, spans, rootId, inventoryRootId };
}
