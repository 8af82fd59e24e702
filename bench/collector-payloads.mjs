/**
 * The collector benchmarks' traffic: OTLP/protobuf payloads of whole traces, made by the real SDK
 * and serializer — a SERVER root without cost.* attributes, 5 PostgreSQL CLIENT spans (a literal
 * per span) and 1 HTTP CLIENT span; half on a route whose budget (examples/demo/budgets.yaml) they
 * breach — and the byte offsets of every span's trace_id, so each send can make its traces new.
 */
import { performance } from 'node:perf_hooks';

/** A pool of OTLP/protobuf payloads of whole traces, made by the real SDK and serializer, with
 * the byte offsets of every span's trace_id. */
export async function generatePayloads({ pool, tracesPerRequest }) {
  const started = performance.now();
  const { SpanKind, trace, ROOT_CONTEXT } = await import('@opentelemetry/api');
  const { TracerProvider } = await import('@opentelemetry/sdk-trace');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  const { ProtobufTraceSerializer } = await import('@opentelemetry/otlp-transformer');
  let ended = [];
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': 'orders',
      'service.version': '2.4.1',
      'telemetry.sdk.language': 'python',
      'telemetry.sdk.name': 'opentelemetry',
      'host.name': 'orders-7d9f',
    }),
    spanProcessors: [
      {
        onStart() {},
        onEnd(span) {
          ended.push(span);
        },
        forceFlush: async () => {},
        shutdown: async () => {},
      },
    ],
  });
  const tracer = provider.getTracer('opentelemetry.instrumentation.psycopg', '0.48b0');
  const base = Date.now() - 60_000;
  let n = 0;
  const oneTrace = () => {
    n += 1;
    const breach = n % 2 === 0; // /users/{id}/orders allows 3 queries; /orders/{id} the default 10
    const id = 1000 + (n % 9000);
    const route = breach ? '/users/{id}/orders' : '/orders/{id}';
    const t0 = base + n * 3;
    let t = t0 + 0.4;
    const root = tracer.startSpan(`GET ${route}`, {
      kind: SpanKind.SERVER,
      startTime: t0,
      attributes: {
        'http.request.method': 'GET',
        'http.route': route,
        'url.path': route.replace('{id}', String(id)),
        'url.scheme': 'http',
        'http.response.status_code': 200,
        'server.address': 'orders',
        'server.port': 8080,
        'network.protocol.version': '1.1',
        'user_agent.original': 'python-requests/2.32.3',
        'client.address': '10.0.3.17',
      },
    });
    const parent = trace.setSpan(ROOT_CONTEXT, root);
    const statements = breach
      ? [
          `SELECT id, name FROM users WHERE id = ${id}`,
          ...[1, 2, 3, 4].map((k) => `SELECT id, total, status FROM orders WHERE user_id = ${id} AND id = ${id * 10 + k}`),
        ]
      : [
          `SELECT id, user_id, total FROM orders WHERE id = ${id}`,
          ...[1, 2, 3, 4].map((k) => `SELECT sku, qty FROM order_items WHERE order_id = ${id} AND line = ${k}`),
        ];
    for (const statement of statements) {
      const duration = 0.3 + ((n * 7 + statement.length) % 20) / 10;
      const span = tracer.startSpan(
        `SELECT ${statement.split(' FROM ')[1].split(' ')[0]}`,
        {
          kind: SpanKind.CLIENT,
          startTime: t,
          attributes: {
            'db.system.name': 'postgresql',
            'db.namespace': 'shop',
            'db.operation.name': 'SELECT',
            'db.query.text': statement,
            'server.address': 'db',
            'server.port': 5432,
            'db.response.returned_rows': 1 + (n % 5),
          },
        },
        parent,
      );
      t += duration;
      span.end(t);
      t += 0.05;
    }
    const call = tracer.startSpan(
      'GET',
      {
        kind: SpanKind.CLIENT,
        startTime: t,
        attributes: {
          'http.request.method': 'GET',
          'url.full': `http://inventory:8080/stock/${id}`,
          'server.address': 'inventory',
          'server.port': 8080,
          'http.response.status_code': 200,
        },
      },
      parent,
    );
    t += 8 + (n % 5);
    call.end(t);
    root.end(t + 0.6);
  };
  const payloads = [];
  for (let p = 0; p < pool; p += 1) {
    ended = [];
    for (let i = 0; i < tracesPerRequest; i += 1) oneTrace();
    const bytes = Buffer.from(ProtobufTraceSerializer.serializeRequest(ended));
    // Span.trace_id is field 1, 16 bytes: tag 0x0a, length 0x10, then the id.
    const offsets = [];
    for (const span of ended) {
      const needle = Buffer.concat([Buffer.from([0x0a, 0x10]), Buffer.from(span.spanContext().traceId, 'hex')]);
      let at = bytes.indexOf(needle);
      let found = 0;
      while (at !== -1) {
        found += 1;
        if (!offsets.includes(at + 2)) offsets.push(at + 2);
        at = bytes.indexOf(needle, at + 1);
      }
      if (found === 0) throw new Error('trace_id not found in the encoded payload');
    }
    if (offsets.length !== ended.length) throw new Error(`found ${offsets.length} trace_id fields for ${ended.length} spans`);
    payloads.push({ bytes, offsets });
  }
  await provider.shutdown();
  return { payloads, ms: performance.now() - started };
}

/** A copy of `payload` whose traces are new: `sequence` written into every trace id. */
export function freshCopy(payload, sequence) {
  const body = Buffer.from(payload.bytes);
  for (const offset of payload.offsets) body.writeUInt32BE(sequence, offset);
  return body;
}
