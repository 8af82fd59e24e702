/**
 * End to end, real processes on loopback: the cost-app under `--require @request-budget/node/register`
 * (no budget file of its own) and hand-built traces of "other language" services (no cost.*
 * attributes) send OTLP to the request-budget-collector CLI, which forwards to an OTLP receiver
 * (decoding with the official schema) and a Zipkin receiver (validating every payload against the
 * Zipkin v2 API contract), and reports breaches in its log and to a webhook.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTRACT_ATTRIBUTES } from '@request-budget/core';
import { startApp, type AppProcess } from '../../test/support/app-process';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../../test/support/otlp-receiver';
import { ExportTraceServiceResponse } from '../../test/support/otlp-schema';
import { awaitServerSpan, tracedGet } from '../../test/support/traced-request';
import { startZipkinReceiver, type ZipkinReceiver } from '../../test/support/zipkin-receiver';
import { COLLECTOR_BUDGETS, startCollectorProcess, type CollectorProcess } from './support/collector-process';
import { ORDERS_ROOT_COST, ordersTrace, postOtlp, toOtlpJson, toOtlpProtobuf } from './support/synthetic-trace';

let receiver: OtlpReceiver;
let zipkin: ZipkinReceiver;
let collector: CollectorProcess;
let app: AppProcess;
let webhook: http.Server;
const webhookBreaches: Record<string, unknown>[] = [];

beforeAll(async () => {
  [receiver, zipkin] = await Promise.all([startOtlpReceiver(), startZipkinReceiver()]);
  webhook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      webhookBreaches.push(...(JSON.parse(body) as { breaches: Record<string, unknown>[] }).breaches);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
  collector = await startCollectorProcess([
    '--budgets',
    COLLECTOR_BUDGETS,
    '--otlp-endpoint',
    receiver.url,
    '--zipkin-endpoint',
    zipkin.spansUrl,
    '--webhook-url',
    `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/breaches`,
    '--grace-period',
    '300ms',
  ]);
  app = await startApp({
    script: 'test/fixtures/cost-app.js',
    env: {
      // Every request measured for memory: the app's own memory figure is part of its record.
      REQUEST_BUDGET_MEMORY_SAMPLE_RATIO: '1',
      OTEL_SERVICE_NAME: 'cost-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_BSP_SCHEDULE_DELAY: '50',
      REQUEST_BUDGET_FILE: undefined,
    },
  });
});
afterAll(async () => {
  await app?.stop();
  await collector?.stop();
  await Promise.all([receiver?.close(), zipkin?.close(), new Promise((resolve) => webhook?.close(resolve))]);
});

const costOf = (span: ReceivedSpan) => Object.fromEntries(Object.entries(span.attributes).filter(([key]) => key.startsWith('cost.')));
const breachLines = () =>
  collector.stderrLines.filter((line) => line.startsWith('{"event":"budget.breach"')).map((line) => JSON.parse(line) as Record<string, unknown>);

describe('the Node.js app through the collector', () => {
  it("keeps the app's own cost record and adds the budget marks the app did not make", async () => {
    const request = await tracedGet(`${app.url}/queries/12`);
    expect(request.response.status).toBe(200);
    const { server } = await awaitServerSpan(receiver, request);
    const cost = costOf(server);
    // The app's record, whole: the heap and GC figures only the app can measure are there.
    expect(Object.keys(cost).sort()).toEqual([
      'cost.db.bytes',
      'cost.db.queries',
      'cost.db.repeated_count',
      'cost.db.repeated_statement',
      'cost.db.rows',
      'cost.db.time_ms',
      'cost.gc.count',
      'cost.gc.time_ms',
      'cost.heap.confidence',
      'cost.heap.delta_bytes',
      'cost.heap.in_flight',
      'cost.http_client.calls',
      'cost.http_client.time_ms',
      'cost.http_client.untimed',
      'cost.jobs.enqueued',
      // The route's first request: its own figure, no route estimate yet.
      'cost.memory.allocated_bytes',
    ]);
    expect(cost).toMatchObject({
      'cost.db.queries': 12,
      'cost.db.rows': 12,
      // 12 DataRow messages of one int4, 1 + 4 + 2 + 4 bytes and its text: 1 byte for 0-9, 2 for 10 and 11.
      'cost.db.bytes': 12 * 11 + 10 + 2 * 2,
      'cost.db.repeated_count': 12,
      'cost.db.repeated_statement': 'SELECT $1::int AS i',
      'cost.heap.in_flight': 1,
    });
    expect(server.attributeTypes['cost.db.queries']).toBe('int');
    expect(server.attributes['budget.rule']).toBe('GET /queries/:n');
    expect(server.attributes['budget.breached']).toBe(true);
    expect(server.attributes['budget.violations']).toEqual(['db.queries 12>10']);
    expect(server.events.map((event) => [event.name, event.attributes, event.attributeTypes])).toEqual([
      [
        'budget.breach',
        { metric: 'db.queries', value: 12, limit: 10, severity: 'critical' },
        { metric: 'string', value: 'int', limit: 'int', severity: 'string' },
      ],
    ]);
    // The whole trace came through: the root and its 12 queries.
    const trace = await receiver.waitFor(
      (all) => all.filter((span) => span.traceId === request.traceId && span.attributes['db.query.text'] === 'SELECT $1::int AS i').length === 12,
    );
    expect(trace.filter((span) => span.traceId === request.traceId && span.kind === 2)).toHaveLength(1);

    const within = await tracedGet(`${app.url}/queries/3`);
    const judged = (await awaitServerSpan(receiver, within)).server;
    expect(judged.attributes).toMatchObject({ 'cost.db.queries': 3, 'budget.rule': 'GET /queries/:n', 'budget.breached': false });
    expect(judged.events).toEqual([]);

    const zipkinRoot = (await zipkin.waitFor((all) => all.some((span) => span.id === server.spanId))).find((span) => span.id === server.spanId)!;
    expect(zipkinRoot).toMatchObject({ traceId: request.traceId, parentId: request.parentSpanId, kind: 'SERVER', localEndpoint: { serviceName: 'cost-app' } });
    expect(zipkinRoot.tags).toMatchObject({
      'cost.db.queries': '12',
      'budget.breached': 'true',
      'budget.violations': 'db.queries 12>10',
      'budget.rule': 'GET /queries/:n',
    });
    // Every attribute the span came with, those judging does not read included.
    const unread = Object.keys(server.attributes).filter((key) => !CONTRACT_ATTRIBUTES.has(key));
    expect(unread.length).toBeGreaterThanOrEqual(3);
    for (const key of unread) expect(zipkinRoot.tags?.[key], key).toBe(String(server.attributes[key]));

    await collector.waitForLine(/"trace_id":"/, 5000, 'stderr');
    expect(breachLines().find((line) => line.trace_id === request.traceId)).toEqual({
      event: 'budget.breach',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      service: 'cost-app',
      route: 'GET /queries/:n',
      rule: 'GET /queries/:n',
      metric: 'db.queries',
      value: 12,
      limit: 10,
      severity: 'critical',
      trace_id: request.traceId,
      span_id: server.spanId,
    });
  });
});

describe.each([
  { encoding: 'protobuf', gzip: false },
  { encoding: 'json', gzip: false },
  { encoding: 'json', gzip: true },
  { encoding: 'protobuf', gzip: true },
] as const)('a Python and a Go service, sent as $encoding (gzip: $gzip)', ({ encoding, gzip }) => {
  it("gets its cost record derived from its own spans and judged, in Jaeger's OTLP and in Zipkin", async () => {
    const trace = ordersTrace();
    const raw = encoding === 'json' ? Buffer.from(JSON.stringify(toOtlpJson(trace))) : Buffer.from(toOtlpProtobuf(trace));
    const response = await postOtlp(
      collector.tracesUrl,
      gzip ? zlib.gzipSync(raw) : raw,
      encoding === 'json' ? 'application/json' : 'application/x-protobuf',
      gzip ? { 'content-encoding': 'gzip' } : {},
    );
    expect(response.status).toBe(200);
    const answer = new Uint8Array(await response.arrayBuffer());
    if (encoding === 'json') {
      expect(response.headers.get('content-type')).toBe('application/json');
      expect(JSON.parse(Buffer.from(answer).toString())).toEqual({});
    } else {
      expect(response.headers.get('content-type')).toBe('application/x-protobuf');
      expect(ExportTraceServiceResponse.toObject(ExportTraceServiceResponse.decode(answer))).toEqual({});
    }

    const spans = (await receiver.waitFor((all) => all.filter((span) => span.traceId === trace.traceId).length === trace.spans.length)).filter(
      (span) => span.traceId === trace.traceId,
    );
    const order = spans.find((span) => span.spanId === trace.rootId)!;
    expect(costOf(order)).toEqual(ORDERS_ROOT_COST);
    expect(order.attributeTypes['cost.db.time_ms']).toBe('double');
    expect(order.attributeTypes['cost.http_client.time_ms']).toBe('double');
    expect(order.resource['service.name']).toBe('orders-py');
    expect(order.attributes).toMatchObject({
      'budget.rule': 'GET /orders/:id',
      'budget.breached': true,
      'budget.violations': ['db.queries 6>5', 'db.time_ms 9.8>8', 'db.repeated_count 3>2'],
    });
    expect(order.events.map((event) => [event.name, event.timeUnixNano - order.endTimeUnixNano, event.attributes])).toEqual([
      ['budget.breach', 0n, { metric: 'db.queries', value: 6, limit: 5, severity: 'warning' }],
      ['budget.breach', 1000n, { metric: 'db.time_ms', value: 9.75, limit: 8, severity: 'warning' }],
      ['budget.breach', 2000n, { metric: 'db.repeated_count', value: 3, limit: 2, severity: 'warning', statement: 'SELECT * FROM items WHERE order_id = ?' }],
    ]);
    const inventory = spans.find((span) => span.spanId === trace.inventoryRootId)!;
    expect(costOf(inventory)).toMatchObject({ 'cost.db.queries': 1, 'cost.db.time_ms': 0.75, 'cost.db.rows': 5 });
    expect(inventory.attributes).toMatchObject({ 'budget.rule': 'GET /stock/:sku', 'budget.breached': false });

    const zipkinSpans = (await zipkin.waitFor((all) => all.filter((span) => span.traceId === trace.traceId).length === trace.spans.length)).filter(
      (span) => span.traceId === trace.traceId,
    );
    const zipkinOrder = zipkinSpans.find((span) => span.id === trace.rootId)!;
    expect(zipkinOrder).toMatchObject({ name: 'GET /orders/{order_id}', kind: 'SERVER', duration: 50_000, localEndpoint: { serviceName: 'orders-py' } });
    expect(Object.fromEntries(Object.entries(zipkinOrder.tags!).filter(([key]) => key.startsWith('cost.') || key.startsWith('budget.')))).toEqual({
      'cost.db.queries': '6',
      'cost.db.time_ms': '9.75',
      'cost.db.rows': '11',
      'cost.db.repeated_count': '3',
      'cost.db.repeated_statement': 'SELECT * FROM items WHERE order_id = ?',
      'cost.http_client.calls': '1',
      'cost.http_client.time_ms': '10',
      'cost.http_client.untimed': '0',
      'cost.jobs.enqueued': '0',
      'budget.rule': 'GET /orders/:id',
      'budget.breached': 'true',
      'budget.violations': 'db.queries 6>5,db.time_ms 9.8>8,db.repeated_count 3>2',
    });
    const endUs = zipkinOrder.timestamp! + zipkinOrder.duration!;
    expect(zipkinOrder.annotations).toEqual([
      { timestamp: endUs, value: 'budget.breach' },
      { timestamp: endUs + 1, value: 'budget.breach' },
      { timestamp: endUs + 2, value: 'budget.breach' },
    ]);
    expect(zipkin.rejections).toEqual([]);

    await collector.waitForLine(new RegExp(`"trace_id":"${trace.traceId}"`), 5000, 'stderr');
    expect(
      breachLines()
        .filter((line) => line.trace_id === trace.traceId)
        .map((line) => [line.service, line.route, line.rule, line.metric, line.value, line.limit, line.span_id]),
    ).toEqual([
      ['orders-py', 'GET /orders/{order_id}', 'GET /orders/:id', 'db.queries', 6, 5, trace.rootId],
      ['orders-py', 'GET /orders/{order_id}', 'GET /orders/:id', 'db.time_ms', 9.75, 8, trace.rootId],
      ['orders-py', 'GET /orders/{order_id}', 'GET /orders/:id', 'db.repeated_count', 3, 2, trace.rootId],
    ]);
    await expect.poll(() => webhookBreaches.filter((breach) => breach.trace_id === trace.traceId).length, { timeout: 5000 }).toBe(3);
  });
});

describe('accounting', () => {
  it('forwards every span it received to each downstream, and counts roots, breaches and requests', async () => {
    // Everything sent so far has been delivered (the tests above waited for it).
    await expect.poll(async () => collector.metric('request_budget_collector_spans_in_memory'), { timeout: 5000 }).toBe(0);
    const metrics = await collector.metrics();
    const received =
      (metrics.get('request_budget_collector_received_spans_total{encoding="protobuf"}') ?? 0) +
      (metrics.get('request_budget_collector_received_spans_total{encoding="json"}') ?? 0);
    expect(received).toBe(receiver.spans.length);
    expect(metrics.get('request_budget_collector_forwarded_spans_total{downstream="otlp"}')).toBe(receiver.spans.length);
    expect(metrics.get('request_budget_collector_forwarded_spans_total{downstream="zipkin"}')).toBe(zipkin.spans.length);
    expect(zipkin.spans.length).toBe(receiver.spans.length);
    expect(metrics.get('request_budget_collector_roots_total{cost_source="derived"}')).toBe(8); // 4 traces × (orders, inventory)
    expect(metrics.get('request_budget_collector_roots_total{cost_source="sdk"}')).toBeGreaterThanOrEqual(2);
    // By the service.name of each root's resource: the four Python traces, and the Node.js app's one.
    expect(new Map([...metrics].filter(([key]) => key.startsWith('request_budget_collector_breaches_total')))).toEqual(
      new Map([
        ['request_budget_collector_breaches_total{service="cost-app",metric="db.queries",severity="critical"}', 1],
        ['request_budget_collector_breaches_total{service="orders-py",metric="db.queries",severity="warning"}', 4],
        ['request_budget_collector_breaches_total{service="orders-py",metric="db.time_ms",severity="warning"}', 4],
        ['request_budget_collector_breaches_total{service="orders-py",metric="db.repeated_count",severity="warning"}', 4],
      ]),
    );
    expect(metrics.get('request_budget_collector_received_requests_total{encoding="json",code="200"}')).toBe(2);
    expect(metrics.get('request_budget_collector_queue_spans{downstream="otlp"}')).toBe(0);
    expect([...metrics.keys()].filter((key) => key.startsWith('request_budget_collector_dropped_spans_total'))).toEqual([]);
  });
});
