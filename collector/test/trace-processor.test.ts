/**
 * The processing of one trace, on decoded OTLP: roots found as in-process, costs derived from a
 * root's own descendants with core's classifier and tally, budgets judged and marked as the
 * in-process BudgetSpanProcessor marks them.
 */
import { BudgetRuleSet, loadBudgetFile } from '@request-budget/core';
import { describe, expect, it } from 'vitest';
import { decodeTraceRequest } from '../src/receiver/otlp-decode';
import { encodeTraceRequest } from '../src/exporter/otlp-encode';
import type { CollectedSpan } from '../src/otlp/otlp-model';
import { attributeToRoots, mayBeRoot } from '../src/processor/root-attribution';
import { NO_RECORD, RecordStore } from '../src/processor/record-store';
import { factsOfSpan, SpanCostReader, type SpanFacts } from '../src/processor/span-facts';
import { normaliseRouteTemplate, TraceProcessor } from '../src/processor/trace-processor';
import { decodeProtobufRequest } from '../../test/support/otlp-decode';
import { COLLECTOR_BUDGETS } from './support/collector-process';
import { Kind, newSpanId, newTraceId, ORDERS_ROOT_COST, ordersTrace, toOtlpJson, toOtlpProtobuf, type SyntheticSpan } from './support/synthetic-trace';

const rules = new BudgetRuleSet(loadBudgetFile(COLLECTOR_BUDGETS));

function decoded(spans: SyntheticSpan[], traceId = newTraceId()): CollectedSpan[] {
  return decodeTraceRequest(toOtlpProtobuf({ traceId, baseNs: 1_700_000_000_000_000_000n, spans }), 'protobuf').spans;
}

/**
 * A trace as the trace window hands it over: the spans that may be roots whole, the facts of the
 * others (forwarded as they came) from its record store.
 */
function viaWindow(spans: readonly CollectedSpan[]): [CollectedSpan[], SpanFacts[]] {
  const store = new RecordStore();
  const costs = new SpanCostReader();
  const held: CollectedSpan[] = [];
  let head = NO_RECORD;
  let tail = NO_RECORD;
  for (const span of spans) {
    if (mayBeRoot(span)) held.push(span);
    else {
      tail = store.add(span, costs, tail);
      if (head === NO_RECORD) head = tail;
    }
  }
  return [held, store.take(head)];
}

/** What the collector forwards, decoded with the official schema: names, values and OTLP types. */
function forwarded(spans: readonly CollectedSpan[]) {
  return decodeProtobufRequest(encodeTraceRequest(spans));
}

describe('a trace from another language', () => {
  it.each([
    ['protobuf', 'through the trace window'],
    ['json', 'through the trace window'],
    ['protobuf', 'every span whole'],
  ] as const)('derives the cost of each root from its own descendants only (%s, %s)', (encoding, path) => {
    const trace = ordersTrace();
    const body = encoding === 'json' ? Buffer.from(JSON.stringify(toOtlpJson(trace))) : toOtlpProtobuf(trace);
    const { spans } = decodeTraceRequest(body, encoding);
    const outcome = path === 'every span whole' ? new TraceProcessor({ rules }).process(spans) : new TraceProcessor({ rules }).process(...viaWindow(spans));
    expect(outcome).toMatchObject({ roots: 2, derived: 2, judged: 2 });

    const out = forwarded(spans);
    const order = out.find((span) => span.spanId === trace.rootId)!;
    const cost = Object.fromEntries(Object.entries(order.attributes).filter(([key]) => key.startsWith('cost.')));
    expect(cost).toEqual(ORDERS_ROOT_COST);
    // The contract's types, whole numbers included: *_ms are doubles.
    expect(Object.fromEntries(Object.keys(cost).map((key) => [key, order.attributeTypes[key]]))).toEqual({
      'cost.db.queries': 'int',
      'cost.db.time_ms': 'double',
      'cost.db.rows': 'int',
      'cost.db.repeated_count': 'int',
      'cost.db.repeated_statement': 'string',
      'cost.http_client.calls': 'int',
      'cost.http_client.time_ms': 'double',
      'cost.http_client.untimed': 'int',
      'cost.jobs.enqueued': 'int',
    });
    expect(order.attributes['budget.rule']).toBe('GET /orders/:id');
    expect(order.attributes['budget.breached']).toBe(true);
    expect(order.attributeTypes['budget.breached']).toBe('bool');
    expect(order.attributes['budget.violations']).toEqual(['db.queries 6>5', 'db.time_ms 9.8>8', 'db.repeated_count 3>2']);
    expect(order.attributeTypes['budget.violations']).toBe('array');
    expect(order.events.map((event) => [event.name, event.timeUnixNano - order.endTimeUnixNano, event.attributes, event.attributeTypes])).toEqual([
      [
        'budget.breach',
        0n,
        { metric: 'db.queries', value: 6, limit: 5, severity: 'warning' },
        { metric: 'string', value: 'int', limit: 'int', severity: 'string' },
      ],
      [
        'budget.breach',
        1000n,
        { metric: 'db.time_ms', value: 9.75, limit: 8, severity: 'warning' },
        { metric: 'string', value: 'double', limit: 'int', severity: 'string' },
      ],
      [
        'budget.breach',
        2000n,
        { metric: 'db.repeated_count', value: 3, limit: 2, severity: 'warning', statement: 'SELECT * FROM items WHERE order_id = ?' },
        { metric: 'string', value: 'int', limit: 'int', severity: 'string', statement: 'string' },
      ],
    ]);

    const inventory = out.find((span) => span.spanId === trace.inventoryRootId)!;
    expect(inventory.attributes).toMatchObject({
      'cost.db.queries': 1,
      'cost.db.time_ms': 0.75,
      'cost.db.rows': 5,
      'cost.db.repeated_count': 1,
      'cost.db.repeated_statement': 'SELECT qty FROM stock WHERE sku = $1',
      'cost.http_client.calls': 0,
      'budget.rule': 'GET /stock/:sku',
      'budget.breached': false,
    });
    expect(inventory.events).toEqual([]);
    // No heap or GC figures out of process, and nothing written on spans that are not roots.
    for (const span of out) {
      expect(Object.keys(span.attributes).filter((key) => key.startsWith('cost.heap') || key.startsWith('cost.gc'))).toEqual([]);
      if (span.spanId !== trace.rootId && span.spanId !== trace.inventoryRootId) {
        expect(Object.keys(span.attributes).filter((key) => key.startsWith('cost.') || key.startsWith('budget.'))).toEqual([]);
      }
    }
    expect(
      outcome.breaches.map((breach) => [breach.service, breach.route, breach.rule, breach.metric, breach.value, breach.limit, breach.traceId, breach.spanId]),
    ).toEqual([
      ['orders-py', 'GET /orders/{order_id}', 'GET /orders/:id', 'db.queries', 6, 5, trace.traceId, trace.rootId],
      ['orders-py', 'GET /orders/{order_id}', 'GET /orders/:id', 'db.time_ms', 9.75, 8, trace.traceId, trace.rootId],
      ['orders-py', 'GET /orders/{order_id}', 'GET /orders/:id', 'db.repeated_count', 3, 2, trace.traceId, trace.rootId],
    ]);
  });

  it('every other span is forwarded exactly as it came', () => {
    const trace = ordersTrace();
    const original = decodeProtobufRequest(toOtlpProtobuf(trace));
    const { spans } = decodeTraceRequest(toOtlpProtobuf(trace), 'protobuf');
    new TraceProcessor({ rules }).process(...viaWindow(spans));
    const out = forwarded(spans);
    const strip = (span: (typeof out)[number]) => ({ ...span, encoding: undefined });
    expect(out.filter((span) => span.spanId !== trace.rootId && span.spanId !== trace.inventoryRootId).map(strip)).toEqual(
      original.filter((span) => span.spanId !== trace.rootId && span.spanId !== trace.inventoryRootId).map(strip),
    );
  });
});

describe('roots', () => {
  const root = (attributes: Record<string, string | number | boolean> = {}, parentSpanId?: string): SyntheticSpan => ({
    service: 'orders-py',
    name: 'GET /x',
    kind: Kind.SERVER,
    spanId: newSpanId(),
    ...(parentSpanId !== undefined ? { parentSpanId } : {}),
    startUs: 0,
    endUs: 10_000,
    attributes: { 'http.request.method': 'GET', 'http.route': '/queries/{n}', ...attributes },
  });
  const query = (parent: string, startUs = 100, service = 'orders-py'): SyntheticSpan => ({
    service,
    name: 'SELECT',
    kind: Kind.CLIENT,
    spanId: newSpanId(),
    parentSpanId: parent,
    startUs,
    endUs: startUs + 100,
    attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT 1' },
  });

  it('leaves a cost record from the Node.js SDK as it is, and judges it when the app did not', () => {
    const sdkRoot = root({ 'cost.db.queries': 12, 'cost.db.time_ms': 3.5, 'cost.heap.confidence': 'high' });
    const spans = decoded([sdkRoot, query(sdkRoot.spanId)]);
    const outcome = new TraceProcessor({ rules }).process(...viaWindow(spans));
    expect(outcome).toMatchObject({ roots: 1, derived: 0, judged: 1 });
    const [out] = forwarded(spans.filter((span) => span.spanId === sdkRoot.spanId));
    expect(out!.attributes).toMatchObject({
      'cost.db.queries': 12,
      'cost.db.time_ms': 3.5,
      'cost.heap.confidence': 'high',
      'budget.rule': 'GET /queries/:n',
      'budget.violations': ['db.queries 12>10'],
    });
    expect(out!.events[0]!.attributes.severity).toBe('critical');
  });

  it('does not judge a root the app already judged, nor a measurement', () => {
    const judged = root({ 'cost.db.queries': 99, 'budget.rule': 'GET /queries/:n', 'budget.breached': false });
    const measured = root({ 'cost.db.queries': 99, 'request_budget.measurement': true });
    const spans = [...decoded([judged]), ...decoded([measured])];
    const processor = new TraceProcessor({ rules });
    expect(processor.process(...viaWindow(spans.slice(0, 1))).judged).toBe(0);
    expect(processor.process(...viaWindow(spans.slice(1))).judged).toBe(0);
    const out = forwarded(spans);
    expect(out[0]!.attributes['budget.breached']).toBe(false);
    expect(out[1]!.attributes['budget.rule']).toBeUndefined();
  });

  it('a job root (request_budget.root) inside a request takes its own queries, judged by the jobs rules', () => {
    const request = root();
    const job: SyntheticSpan = {
      service: 'orders-py',
      name: 'job email.send',
      kind: Kind.INTERNAL,
      spanId: newSpanId(),
      parentSpanId: request.spanId,
      startUs: 200,
      endUs: 5000,
      attributes: { 'request_budget.root': true, 'request_budget.job.name': 'email.send' },
    };
    const spans = decoded([request, query(request.spanId), job, query(job.spanId, 300), query(job.spanId, 600), query(job.spanId, 900)]);
    const outcome = new TraceProcessor({ rules }).process(...viaWindow(spans));
    expect(outcome.roots).toBe(2);
    const out = forwarded(spans);
    expect(out.find((span) => span.spanId === request.spanId)!.attributes['cost.db.queries']).toBe(1);
    const jobOut = out.find((span) => span.spanId === job.spanId)!;
    expect(jobOut.attributes).toMatchObject({ 'cost.db.queries': 3, 'budget.rule': 'email.*', 'budget.violations': ['db.queries 3>2'] });
    expect(outcome.breaches.map((breach) => breach.route)).toEqual(['job email.send']);
  });

  it("counts each enqueue (PRODUCER with messaging.system) as enqueued, and the queue library's own work beneath it as nothing else", () => {
    const request = root();
    const producer = (startUs: number, attributes: Record<string, string | number>): SyntheticSpan => ({
      service: 'orders-py',
      name: 'send email',
      kind: Kind.PRODUCER,
      spanId: newSpanId(),
      parentSpanId: request.spanId,
      startUs,
      endUs: startUs + 400,
      attributes,
    });
    const single = producer(100, { 'messaging.system': 'procrastinate', 'messaging.destination.name': 'email' });
    const batch = producer(600, { 'messaging.system': 'procrastinate', 'messaging.batch.message_count': 4 });
    // A PRODUCER without messaging.system is no enqueue (a library's own span, say), nor is a CLIENT.
    const bare = producer(1100, { 'bullmq.queue.name': 'email' });
    const inner: SyntheticSpan = {
      ...query(single.spanId, 150),
      attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'INSERT INTO procrastinate_jobs VALUES ($1)' },
    };
    const deeper: SyntheticSpan = {
      service: 'orders-py',
      name: 'tx',
      kind: Kind.INTERNAL,
      spanId: newSpanId(),
      parentSpanId: batch.spanId,
      startUs: 650,
      endUs: 900,
    };
    const spans = decoded([request, query(request.spanId, 50), single, inner, batch, deeper, query(deeper.spanId, 700), bare, query(bare.spanId, 1200)]);
    new TraceProcessor({ rules }).process(...viaWindow(spans));
    // The request's own query, the one under the bare PRODUCER; 1 + 4 jobs enqueued.
    expect(spans.find((span) => span.spanId === request.spanId)!.attributes).toMatchObject({ 'cost.db.queries': 2, 'cost.jobs.enqueued': 5 });
  });

  it('a CONSUMER span is a root of its own, even under a local PRODUCER of the request that sent the message', () => {
    const request = root();
    const send: SyntheticSpan = {
      service: 'orders-py',
      name: 'publish orders',
      kind: Kind.PRODUCER,
      spanId: newSpanId(),
      parentSpanId: request.spanId,
      startUs: 100,
      endUs: 300,
      attributes: { 'messaging.system': 'rabbitmq' },
    };
    const receive: SyntheticSpan = {
      service: 'orders-py',
      name: 'orders process',
      kind: Kind.CONSUMER,
      spanId: newSpanId(),
      parentSpanId: send.spanId,
      startUs: 400,
      endUs: 4000,
      attributes: { 'messaging.system': 'rabbitmq' },
    };
    const spans = decoded([
      request,
      query(request.spanId, 50),
      send,
      receive,
      query(receive.spanId, 500),
      query(receive.spanId, 800),
      query(receive.spanId, 1100),
    ]);
    const outcome = new TraceProcessor({ rules }).process(...viaWindow(spans));
    expect(outcome.roots).toBe(2);
    const byId = (id: string) => spans.find((span) => span.spanId === id)!;
    expect(byId(request.spanId).attributes).toMatchObject({ 'cost.db.queries': 1, 'cost.jobs.enqueued': 1 });
    expect(byId(receive.spanId).attributes).toMatchObject({ 'cost.db.queries': 3, 'cost.jobs.enqueued': 0 });
  });

  it("a SERVER span under a local parent is not a root; a child started after its root ended is nobody's", () => {
    const request = root();
    const nested: SyntheticSpan = { ...root(), name: 'nested server', parentSpanId: request.spanId, startUs: 100, endUs: 5000 };
    const late = query(request.spanId, 20_000);
    const spans = decoded([request, nested, query(nested.spanId), late]);
    const roots = attributeToRoots(spans.map((span) => factsOfSpan(span, new SpanCostReader())));
    const byId = (id: string) => spans.find((span) => span.spanId === id)!;
    const rootOf = (id: string) => roots[spans.findIndex((span) => span.spanId === id)]?.span;
    expect(rootOf(nested.spanId)).toBe(byId(request.spanId));
    expect(rootOf(late.spanId)).toBeUndefined();
    new TraceProcessor({ rules }).process(...viaWindow(spans));
    expect(byId(request.spanId).attributes['cost.db.queries']).toBe(1);
  });

  it('a SERVER span called by a CLIENT span is a root of its own, even from a process that looks the same', () => {
    // A service calling itself, both replicas with the same resource, and no span flags (older
    // SDKs): the client's context went over the wire, so in-process the server span is a root.
    const outer = root();
    const call: SyntheticSpan = {
      service: 'orders-py',
      name: 'GET',
      kind: Kind.CLIENT,
      spanId: newSpanId(),
      parentSpanId: outer.spanId,
      startUs: 200,
      endUs: 9000,
      attributes: { 'http.request.method': 'GET' },
    };
    const inner: SyntheticSpan = { ...root(), parentSpanId: call.spanId, startUs: 300, endUs: 8000 };
    const spans = decoded([outer, query(outer.spanId), call, inner, query(inner.spanId, 400), query(inner.spanId, 600)]);
    const outcome = new TraceProcessor({ rules }).process(...viaWindow(spans));
    expect(outcome).toMatchObject({ roots: 2, derived: 2, judged: 2 });
    const byId = (id: string) => spans.find((span) => span.spanId === id)!;
    expect(byId(outer.spanId).attributes).toMatchObject({ 'cost.db.queries': 1, 'cost.http_client.calls': 1 });
    expect(byId(inner.spanId).attributes).toMatchObject({ 'cost.db.queries': 2, 'cost.http_client.calls': 0, 'budget.rule': 'GET /queries/:n' });
  });

  it("spans of another process are never a root's cost, even as its children", () => {
    const request = root();
    const spans = decoded([request, query(request.spanId, 100, 'inventory-go'), query(request.spanId, 300)]);
    new TraceProcessor({ rules }).process(...viaWindow(spans));
    expect(spans.find((span) => span.spanId === request.spanId)!.attributes['cost.db.queries']).toBe(1);
  });

  it("a trace sent twice (a sender's retry) is counted and judged once", () => {
    const trace = ordersTrace();
    const spans = [...decodeTraceRequest(toOtlpProtobuf(trace), 'protobuf').spans, ...decodeTraceRequest(toOtlpProtobuf(trace), 'protobuf').spans];
    const outcome = new TraceProcessor({ rules }).process(...viaWindow(spans));
    expect(outcome).toMatchObject({ roots: 2, derived: 2, judged: 2 });
    expect(outcome.breaches.map((breach) => `${breach.metric} ${breach.value}`)).toEqual(['db.queries 6', 'db.time_ms 9.75', 'db.repeated_count 3']);
    const [first, second] = spans.filter((span) => span.spanId === trace.rootId);
    expect(first!.attributes).toMatchObject({
      'cost.db.queries': 6,
      'cost.db.time_ms': 9.75,
      'cost.db.rows': 11,
      'budget.violations': ['db.queries 6>5', 'db.time_ms 9.8>8', 'db.repeated_count 3>2'],
    });
    expect(second!.attributes['cost.db.queries']).toBeUndefined();
  });

  it('survives parent loops', () => {
    const a = newSpanId();
    const b = newSpanId();
    const spans = decoded([
      { service: 'orders-py', name: 'a', kind: Kind.SERVER, spanId: a, parentSpanId: b, startUs: 0, endUs: 10 },
      { service: 'orders-py', name: 'b', kind: Kind.INTERNAL, spanId: b, parentSpanId: a, startUs: 0, endUs: 10 },
    ]);
    expect(() => new TraceProcessor({ rules }).process(...viaWindow(spans))).not.toThrow();
  });

  it('without budgets, derives and judges nothing', () => {
    const request = root();
    const spans = decoded([request, query(request.spanId)]);
    expect(new TraceProcessor().process(...viaWindow(spans))).toEqual({ roots: 1, derived: 1, judged: 0, breaches: [] });
    expect(spans[0]!.attributes['budget.rule']).toBeUndefined();
  });
});

describe('route templates of other frameworks', () => {
  it.each([
    ['/orders/{order_id}', '/orders/:order_id'],
    ['/files/{*path}', '/files/:path'],
    ['/users/{id:int}', '/users/:id'],
    ['/orders/<int:order_id>/items', '/orders/:order_id/items'],
    ['/orders/<id>', '/orders/:id'],
    ['api/orders/{id}', '/api/orders/:id'],
    ['/users/:id', '/users/:id'],
  ])('%s matches rules as %s', (template, expected) => {
    expect(normaliseRouteTemplate(template)).toBe(expected);
  });
});
