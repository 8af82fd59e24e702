/**
 * Scale-out: three request-budget-collector processes behind a router that balances by trace id as
 * otelcol's loadbalancing exporter does (support/trace-id-router.ts), each forwarding to a
 * downstream of its own, so what each instance judged is told apart. The traffic is what several
 * services' SDKs send: each checkout's spans arrive in three requests from two processes —
 * orders-py's first queries, then its SERVER root with the rest, then web-frontend's SERVER root
 * and CLIENT call — every request mixing several checkouts. Routed by trace id, every checkout is
 * judged whole by one instance; the same requests spread round-robin are judged too, but on
 * fragments, and the test names the wrong figures that come out.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ExportTraceServiceRequest } from '../../test/support/otlp-schema';
import type { ReceivedSpan } from '../../test/support/received-span';
import type { CollectorProcess } from './support/collector-process';
import { useCollectorsAndDownstreams } from './support/collectors-and-downstreams';
import type { DownstreamServer } from './support/downstream-server';
import { Kind, newSpanId, newTraceId, toOtlpProtobuf, type SyntheticSpan, type SyntheticTrace } from './support/synthetic-trace';
import { otlpGrpcClient, startTraceIdRouter, type OtlpGrpcClient, type TraceIdRouter } from './support/trace-id-router';

const harness = useCollectorsAndDownstreams();
const started: { routers: TraceIdRouter[]; clients: OtlpGrpcClient[] } = { routers: [], clients: [] };
afterEach(async () => {
  for (const client of started.clients.splice(0)) client.close();
  await Promise.all(started.routers.splice(0).map((router) => router.close()));
});

const CHECKOUTS = 210;
/** The same on every instance (as a scale-out needs): room for the gaps of a loaded machine. */
const JUDGING = { '--grace-period': '4s', '--max-trace-wait': '8s' };
/** `GET /orders/:id` allows 5 queries (test/fixtures/budgets.yaml); its 8 ms of DB time is never reached here. */
const QUERY_LIMIT = 5;
const BATCH_TRACES = 7;
const INSTANCES = 3;

/** One checkout: web-frontend's request calling orders-py, which runs `queries` queries. */
interface Checkout {
  readonly traceId: string;
  readonly queries: number;
  readonly frontendRootId: string;
  readonly ordersRootId: string;
  /** Sent first: orders-py's queries that ended before the rest (the first half). */
  readonly early: SyntheticTrace;
  /** orders-py's SERVER root and its other queries. */
  readonly late: SyntheticTrace;
  /** web-frontend's SERVER root and its CLIENT call to orders-py. */
  readonly frontend: SyntheticTrace;
  readonly spanIds: readonly string[];
}

/** 2 to 7 queries of 1 ms each, by turns: checkouts with 6 or 7 breach `db.queries`, one in three. */
function checkout(index: number): Checkout {
  const traceId = newTraceId();
  const baseNs = BigInt(Date.now() - 1000) * 1_000_000n;
  const queries = 2 + (index % 6);
  const frontendRootId = newSpanId();
  const callId = newSpanId();
  const ordersRootId = newSpanId();
  const frontendSpans: SyntheticSpan[] = [
    {
      service: 'web-frontend',
      name: 'GET /checkout/{cart_id}',
      kind: Kind.SERVER,
      spanId: frontendRootId,
      startUs: 0,
      endUs: 60_000,
      attributes: { 'http.request.method': 'GET', 'http.route': '/checkout/{cart_id}' },
    },
    {
      service: 'web-frontend',
      name: 'GET',
      kind: Kind.CLIENT,
      spanId: callId,
      parentSpanId: frontendRootId,
      startUs: 5000,
      endUs: 45_000,
      attributes: { 'http.request.method': 'GET', 'url.full': `http://orders/orders/${index}` },
    },
  ];
  const ordersRoot: SyntheticSpan = {
    service: 'orders-py',
    name: 'GET /orders/{order_id}',
    kind: Kind.SERVER,
    spanId: ordersRootId,
    parentSpanId: callId,
    startUs: 10_000,
    endUs: 40_000,
    attributes: { 'http.request.method': 'GET', 'http.route': '/orders/{order_id}' },
  };
  const querySpans = Array.from({ length: queries }, (_, n): SyntheticSpan => ({
    service: 'orders-py',
    name: 'SELECT',
    kind: Kind.CLIENT,
    spanId: newSpanId(),
    parentSpanId: ordersRootId,
    startUs: 11_000 + n * 3000,
    endUs: 12_000 + n * 3000,
    attributes: { 'db.system.name': 'postgresql', 'db.query.text': `SELECT * FROM table_${n} WHERE id = ${index}`, 'db.response.returned_rows': 1 },
  }));
  const half = Math.floor(queries / 2);
  const part = (spans: SyntheticSpan[]): SyntheticTrace => ({ traceId, baseNs, spans });
  return {
    traceId,
    queries,
    frontendRootId,
    ordersRootId,
    early: part(querySpans.slice(0, half)),
    late: part([ordersRoot, ...querySpans.slice(half)]),
    frontend: part(frontendSpans),
    spanIds: [...frontendSpans, ordersRoot, ...querySpans].map((span) => span.spanId),
  };
}

type Part = 'early' | 'late' | 'frontend';

interface Batch {
  readonly part: Part;
  readonly checkouts: readonly number[];
  readonly message: Uint8Array;
}

/** One request of one process: a single ResourceSpans and ScopeSpans holding several checkouts' spans. */
function encodeBatch(pieces: readonly SyntheticTrace[]): Uint8Array {
  type Decoded = { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] };
  const [first, ...rest] = pieces.map((piece) => ExportTraceServiceRequest.decode(toOtlpProtobuf(piece)) as unknown as Decoded);
  first!.resourceSpans[0]!.scopeSpans[0]!.spans.push(...rest.flatMap((request) => request.resourceSpans[0]!.scopeSpans[0]!.spans));
  return ExportTraceServiceRequest.encode(first!).finish();
}

/**
 * The requests in the order they are sent: rounds of orders-py's early queries, its roots, then
 * web-frontend's spans, 7 checkouts a request, each kind grouping them with another offset (0, 3,
 * 5), so a request mixes checkouts whose other parts travel in different requests. A checkout's
 * early queries always go before its two roots, which go at most a round (a few requests) apart:
 * inside the grace period even on a loaded machine (at 2 s, 4 CPU hogs on 2 cores made a few
 * checkouts' frontend spans arrive after their trace was processed).
 */
function sendOrder(checkouts: readonly Checkout[]): Batch[] {
  const parts: readonly (readonly [Part, number])[] = [
    ['early', 0],
    ['late', 3],
    ['frontend', 5],
  ];
  const batches: Batch[] = [];
  for (let round = 0; round <= Math.floor((checkouts.length - 1 + 5) / BATCH_TRACES); round += 1) {
    for (const [part, offset] of parts) {
      const members = checkouts.flatMap((_, index) => (Math.floor((index + offset) / BATCH_TRACES) === round ? [index] : []));
      if (members.length > 0) batches.push({ part, checkouts: members, message: encodeBatch(members.map((index) => checkouts[index]![part])) });
    }
  }
  return batches;
}

interface Instance {
  readonly collector: CollectorProcess;
  readonly downstream: DownstreamServer;
}

async function startInstances(): Promise<Instance[]> {
  const downstreams = await Promise.all(Array.from({ length: INSTANCES }, () => harness.downstreamOn()));
  return Promise.all(
    downstreams.map(async (downstream) => ({
      collector: await harness.collectorFor(downstream.url, JUDGING),
      downstream,
    })),
  );
}

/** Sum of every series of a metric (all label sets). */
async function metricSum(collector: CollectorProcess, name: string): Promise<number> {
  let sum = 0;
  for (const [series, value] of await collector.metrics()) if (series === name || series.startsWith(`${name}{`)) sum += value;
  return sum;
}

/**
 * Waits until the downstreams hold `total` spans and no instance holds or queues any more. Spans
 * that cannot be roots are forwarded as they come: a trace without a root on an instance (a
 * fragment) is delivered whole while its records still wait out --max-trace-wait there.
 */
async function awaitDelivery(instances: readonly Instance[], total: number): Promise<void> {
  await expect.poll(() => instances.reduce((sum, { downstream }) => sum + downstream.spans.length, 0), { timeout: 20_000, interval: 100 }).toBe(total);
  // The last answers may still be on their way back: the queue counts a batch until it is answered.
  for (const { collector } of instances) {
    await expect.poll(() => collector.metric('request_budget_collector_queue_spans{downstream="otlp"}'), { timeout: 5000 }).toBe(0);
    await expect.poll(() => collector.metric('request_budget_collector_traces_in_memory'), { timeout: 15_000, interval: 200 }).toBe(0);
    expect(await collector.metric('request_budget_collector_spans_in_memory')).toBe(0);
    expect(await collector.metric('request_budget_collector_span_records_in_memory')).toBe(0);
  }
  // Nothing more came once the windows were empty: every span delivered once.
  expect(instances.reduce((sum, { downstream }) => sum + downstream.spans.length, 0)).toBe(total);
}

/** Where each span arrived: span id → the instances (by index) whose downstream received it. */
function whereSpansArrived(instances: readonly Instance[]): Map<string, { instance: number; span: ReceivedSpan }[]> {
  const arrived = new Map<string, { instance: number; span: ReceivedSpan }[]>();
  instances.forEach(({ downstream }, instance) => {
    for (const span of downstream.spans) arrived.set(span.spanId, [...(arrived.get(span.spanId) ?? []), { instance, span }]);
  });
  return arrived;
}

/** What the collector derived and judged for a root: the figures a split trace would get wrong. */
function judgement(span: ReceivedSpan | undefined) {
  return {
    queries: span?.attributes['cost.db.queries'],
    dbTimeMs: span?.attributes['cost.db.time_ms'],
    rows: span?.attributes['cost.db.rows'],
    httpCalls: span?.attributes['cost.http_client.calls'],
    rule: span?.attributes['budget.rule'],
    breached: span?.attributes['budget.breached'],
    violations: span?.attributes['budget.violations'],
    breachEvents: span?.events.filter((event) => event.name === 'budget.breach').length,
  };
}

function expectedOrders(queries: number) {
  return {
    queries,
    dbTimeMs: queries,
    rows: queries,
    httpCalls: 0,
    rule: 'GET /orders/:id',
    breached: queries > QUERY_LIMIT,
    violations: queries > QUERY_LIMIT ? [`db.queries ${queries}>${QUERY_LIMIT}`] : undefined,
    breachEvents: queries > QUERY_LIMIT ? 1 : 0,
  };
}

const EXPECTED_FRONTEND = { queries: 0, dbTimeMs: 0, rows: 0, httpCalls: 1, rule: 'defaults', breached: false, violations: undefined, breachEvents: 0 };

const breachLogTraceIds = (collector: CollectorProcess): string[] =>
  collector.stderrLines.filter((line) => line.startsWith('{"event":"budget.breach"')).map((line) => (JSON.parse(line) as { trace_id: string }).trace_id);

describe('request-budget-collector scaled out to 3 instances', () => {
  it('behind a trace-id router, judges every checkout once, whole, on the instance its trace id hashes to', async () => {
    const instances = await startInstances();
    const addresses = instances.map(({ collector }) => collector.grpcAddress!);
    const router = await startTraceIdRouter(addresses);
    started.routers.push(router);
    const sender = otlpGrpcClient(router.address);
    started.clients.push(sender);
    const checkouts = Array.from({ length: CHECKOUTS }, (_, index) => checkout(index));
    const totalSpans = checkouts.reduce((sum, { spanIds }) => sum + spanIds.length, 0);
    const breaching = checkouts.filter(({ queries }) => queries > QUERY_LIMIT);
    expect(breaching).toHaveLength(70);

    const batches = sendOrder(checkouts);
    expect(batches).toHaveLength(92);
    for (const batch of batches) await sender.export(batch.message);
    await awaitDelivery(instances, totalSpans);

    // Nothing lost or doubled: the router forwarded every span once, each instance received what
    // the router sent it and forwarded all of it, and dropped nothing.
    expect(router.failedForwards).toBe(0);
    const routedTo = (address: string) => checkouts.filter(({ traceId }) => router.backendFor(traceId) === address);
    for (const [index, { collector }] of instances.entries()) {
      const spans = routedTo(addresses[index]!).reduce((sum, { spanIds }) => sum + spanIds.length, 0);
      expect(router.forwardedSpans.get(addresses[index]!)).toBe(spans);
      expect(await collector.metric('request_budget_collector_received_spans_total{encoding="grpc"}')).toBe(spans);
      expect(await collector.metric('request_budget_collector_forwarded_spans_total{downstream="otlp"}')).toBe(spans);
      expect(await metricSum(collector, 'request_budget_collector_dropped_spans_total')).toBe(0);
    }

    // Whole: every span of a checkout, from both services and all three requests, reached the one
    // instance its trace id hashes to, once.
    const arrived = whereSpansArrived(instances);
    expect(arrived.size).toBe(totalSpans);
    const instancesOf = ({ spanIds }: Checkout) => spanIds.map((spanId) => (arrived.get(spanId) ?? []).map(({ instance }) => instance));
    expect(checkouts.map(instancesOf)).toEqual(checkouts.map(({ traceId, spanIds }) => spanIds.map(() => [addresses.indexOf(router.backendFor(traceId))])));

    // The children (the CLIENT call and the queries) were forwarded as they came; the two roots
    // were held for the grace period, judged, and reached the downstream after all of them.
    const order = new Map<string, number>();
    for (const { downstream } of instances) downstream.spans.forEach((span, index) => order.set(span.spanId, index));
    const rootsAfterChildren = checkouts.map(({ spanIds, frontendRootId, ordersRootId }) => {
      const children = spanIds.filter((spanId) => spanId !== frontendRootId && spanId !== ordersRootId);
      return Math.max(...children.map((spanId) => order.get(spanId)!)) < Math.min(order.get(frontendRootId)!, order.get(ordersRootId)!);
    });
    expect(rootsAfterChildren).toEqual(checkouts.map(() => true));

    // Every instance got a share, and judged both roots of each of its checkouts, each once, in
    // one window (no late span, no trace flushed before its grace period).
    const shares = addresses.map((address) => routedTo(address).length);
    for (const share of shares) expect(share).toBeGreaterThan(0);
    expect(shares.reduce((sum, share) => sum + share, 0)).toBe(CHECKOUTS);
    for (const [index, { collector }] of instances.entries()) {
      expect(await collector.metric('request_budget_collector_judged_roots_total')).toBe(2 * shares[index]!);
      expect(await collector.metric('request_budget_collector_roots_total{cost_source="derived"}')).toBe(2 * shares[index]!);
      expect(await collector.metric('request_budget_collector_flushed_traces_total{reason="root_grace"}')).toBe(shares[index]!);
      expect(await metricSum(collector, 'request_budget_collector_flushed_traces_total')).toBe(shares[index]!);
      expect(await collector.metric('request_budget_collector_late_spans_total')).toBe(0);
    }

    // Each root's cost record holds all its queries, so exactly the checkouts over 5 queries breach.
    const rootSpan = (spanId: string) => arrived.get(spanId)?.[0]?.span;
    expect(checkouts.map(({ ordersRootId }) => judgement(rootSpan(ordersRootId)))).toEqual(checkouts.map(({ queries }) => expectedOrders(queries)));
    expect(checkouts.map(({ frontendRootId }) => judgement(rootSpan(frontendRootId)))).toEqual(checkouts.map(() => EXPECTED_FRONTEND));

    // Judged once: the budget marks are on the 420 roots and nowhere else; the breach mark on each
    // breaching checkout's orders root only; one breach counted and logged per breaching checkout,
    // by the instance that holds it.
    const allSpans = instances.flatMap(({ downstream }) => downstream.spans);
    const sorted = (ids: string[]) => [...ids].sort();
    const rootIds = sorted(checkouts.flatMap(({ frontendRootId, ordersRootId }) => [frontendRootId, ordersRootId]));
    expect(sorted(allSpans.filter((span) => span.attributes['budget.rule'] !== undefined).map((span) => span.spanId))).toEqual(rootIds);
    // The costs too: a child, forwarded before its trace was judged, carries none.
    expect(sorted(allSpans.filter((span) => Object.keys(span.attributes).some((key) => key.startsWith('cost.'))).map((span) => span.spanId))).toEqual(rootIds);
    expect(sorted(allSpans.filter((span) => span.attributes['budget.breached'] === true).map((span) => span.spanId))).toEqual(
      sorted(breaching.map(({ ordersRootId }) => ordersRootId)),
    );
    for (const [index, { collector }] of instances.entries()) {
      const mine = breaching.filter(({ traceId }) => router.backendFor(traceId) === addresses[index]);
      expect(await metricSum(collector, 'request_budget_collector_breaches_total')).toBe(mine.length);
      expect(await collector.metric('request_budget_collector_breaches_total{service="orders-py",metric="db.queries",severity="warning"}')).toBe(mine.length);
      await expect.poll(() => sorted(breachLogTraceIds(collector)), { timeout: 5000 }).toEqual(sorted(mine.map(({ traceId }) => traceId)));
    }
  });

  it('spread round-robin by request instead, judges each root once but on fragments: costs too low, breaches missed', async () => {
    const instances = await startInstances();
    const senders = instances.map(({ collector }) => otlpGrpcClient(collector.grpcAddress!));
    started.clients.push(...senders);
    const checkouts = Array.from({ length: CHECKOUTS }, (_, index) => checkout(index));
    const totalSpans = checkouts.reduce((sum, { spanIds }) => sum + spanIds.length, 0);

    const batches = sendOrder(checkouts);
    for (const [number, batch] of batches.entries()) await senders[number % INSTANCES]!.export(batch.message);
    await awaitDelivery(instances, totalSpans);

    // Where round-robin put each part: the rounds of three requests line up with the three
    // instances — early queries on 0, orders roots on 1, frontend spans on 2 — until the last
    // round, which has no early queries (orders roots of checkouts 207–209 on 0, frontend spans of
    // 205–209 on 1).
    const instanceOf = new Map<string, number>();
    batches.forEach(({ part, checkouts: members }, number) => {
      for (const index of members) instanceOf.set(`${part}:${index}`, number % INSTANCES);
    });
    const where = (part: Part, index: number) => instanceOf.get(`${part}:${index}`);
    expect(checkouts.map((_, index) => [where('early', index), where('late', index), where('frontend', index)])).toEqual(
      checkouts.map((_, index) => [0, index >= 207 ? 0 : 1, index >= 205 ? 1 : 2]),
    );

    // An orders root counts only the queries that reached its instance: for checkouts 0–206 the
    // second half, ceil(n/2) of n; only 207–209 got theirs whole.
    const arrived = whereSpansArrived(instances);
    expect(arrived.size).toBe(totalSpans);
    const judgedQueries = checkouts.map(({ ordersRootId }) => arrived.get(ordersRootId)![0]!.span.attributes['cost.db.queries'] as number);
    expect(judgedQueries).toEqual(checkouts.map(({ queries }, index) => (index >= 207 ? queries : Math.ceil(queries / 2))));
    expect(checkouts.filter(({ queries }, index) => judgedQueries[index]! < queries)).toHaveLength(207);

    // Still judged once each (420 roots: the split does not duplicate a root, it starves it), but
    // 2 breaches come out of 70: checkouts 208 (6 queries) and 209 (7), the only whole ones over 5.
    const judged = await Promise.all(instances.map(({ collector }) => collector.metric('request_budget_collector_judged_roots_total')));
    expect(judged).toEqual([3, 212, 205]);
    const breached = instances.flatMap(({ downstream }) => downstream.spans.filter((span) => span.attributes['budget.breached'] === true));
    expect(breached.map((span) => span.spanId).sort()).toEqual([checkouts[208]!.ordersRootId, checkouts[209]!.ordersRootId].sort());
    expect(checkouts.filter(({ queries }) => queries > QUERY_LIMIT)).toHaveLength(70);
    // Instance 0's fragments of early queries had no root to wait for: forwarded as they came, their
    // records held to --max-trace-wait, then let go unjudged (no root, so no judgement, no cost).
    expect(await instances[0]!.collector.metric('request_budget_collector_flushed_traces_total{reason="max_wait"}')).toBe(207);
    const earlyIds = new Set(checkouts.slice(0, 207).flatMap(({ early }) => early.spans.map((span) => span.spanId)));
    const earlyDelivered = instances[0]!.downstream.spans.filter((span) => earlyIds.has(span.spanId));
    expect(earlyDelivered).toHaveLength(earlyIds.size);
    expect(earlyDelivered.filter((span) => Object.keys(span.attributes).some((key) => key.startsWith('cost.') || key.startsWith('budget.')))).toEqual([]);
    // Every checkout is in pieces on two or three instances.
    const spread = checkouts.map(({ spanIds }) => new Set(spanIds.map((spanId) => arrived.get(spanId)![0]!.instance)).size);
    expect(spread.filter((count) => count > 1)).toHaveLength(CHECKOUTS);
  });
});
