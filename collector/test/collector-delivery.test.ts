/**
 * Delivery to downstreams, with the collector as a child process: a downstream that is down is
 * retried until it comes back and then gets every accepted span exactly once; Retry-After is
 * honoured; when the queue is full, senders get 503 with Retry-After and the refused spans are
 * counted; a request beyond --max-concurrent-requests gets 503 before its body is read;
 * SIGTERM delivers the traces still held and the batches in flight before exiting.
 *
 * Spans that cannot be roots (here all but the two SERVER spans of a trace) are forwarded as they
 * arrive; the roots follow, judged, a grace period later, usually in another request.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../test/support/free-port';
import { otlpRoot } from '../src/otlp/otlp-schema';
import type { CollectorProcess } from './support/collector-process';
import { useCollectorsAndDownstreams } from './support/collectors-and-downstreams';
import type { DownstreamServer } from './support/downstream-server';
import { Kind, ORDERS_ROOT_COST, ordersTrace, postOtlp, toOtlpProtobuf, type SyntheticSpan } from './support/synthetic-trace';

const SPANS_PER_TRACE = ordersTrace().spans.length;
/** Spans that may be roots (SERVER, CONSUMER): held whole until their trace is judged; the others are forwarded as they arrive. */
const mayBeRoot = (span: SyntheticSpan): boolean => span.kind === Kind.SERVER || span.kind === Kind.CONSUMER;
const ROOTS_PER_TRACE = ordersTrace().spans.filter(mayBeRoot).length;
const CHILDREN_PER_TRACE = SPANS_PER_TRACE - ROOTS_PER_TRACE;
const { collectorFor, downstreamOn } = useCollectorsAndDownstreams();

async function sendTraces(collector: CollectorProcess, count: number): Promise<ReturnType<typeof ordersTrace>[]> {
  const traces = Array.from({ length: count }, () => ordersTrace());
  for (const trace of traces) expect((await postOtlp(collector.tracesUrl, toOtlpProtobuf(trace), 'application/x-protobuf')).status).toBe(200);
  return traces;
}

type OrdersTrace = ReturnType<typeof ordersTrace>;

const childIdsOf = (traces: OrdersTrace[]): string[] => traces.flatMap((trace) => trace.spans.filter((span) => !mayBeRoot(span)).map((span) => span.spanId));

/**
 * Every span of `traces`, and the children only of `childrenOf` (their roots still held), arrived
 * exactly once; every root was judged on the way (its cost derived from the children forwarded
 * before it), and no other span carries a cost.* or budget.* attribute.
 */
function expectDeliveredOnce(downstream: DownstreamServer, traces: OrdersTrace[], childrenOf: OrdersTrace[] = []): void {
  const ids = downstream.spans.map((span) => span.spanId);
  expect(new Set(ids).size).toBe(ids.length);
  expect(ids.sort()).toEqual([...traces.flatMap((trace) => trace.spans.map((span) => span.spanId)), ...childIdsOf(childrenOf)].sort());
  const byId = new Map(downstream.spans.map((span) => [span.spanId, span]));
  for (const trace of traces) {
    const order = byId.get(trace.rootId)!;
    expect(Object.fromEntries(Object.entries(order.attributes).filter(([key]) => key.startsWith('cost.')))).toEqual(ORDERS_ROOT_COST);
    expect(order.attributes['budget.violations']).toEqual(['db.queries 6>5', 'db.time_ms 9.8>8', 'db.repeated_count 3>2']);
    expect(byId.get(trace.inventoryRootId)!.attributes).toMatchObject({ 'budget.rule': 'GET /stock/:sku', 'budget.breached': false });
  }
  const roots = new Set(traces.flatMap((trace) => [trace.rootId, trace.inventoryRootId]));
  const edited = downstream.spans
    .filter((span) => !roots.has(span.spanId))
    .filter((span) => Object.keys(span.attributes).some((key) => key.startsWith('cost.') || key.startsWith('budget.')));
  expect(edited.map((span) => span.name)).toEqual([]);
}

/** The span ids of the first `count` spans the downstream accepted, sorted. */
const firstAccepted = (downstream: DownstreamServer, count: number): string[] =>
  downstream.spans
    .slice(0, count)
    .map((span) => span.spanId)
    .sort();

describe('a downstream that is down', () => {
  it('is retried with backoff, and gets every accepted span exactly once when it comes back', async () => {
    const port = await freePort();
    const collector = await collectorFor(`http://127.0.0.1:${port}`);
    const traces = await sendTraces(collector, 5);
    await expect
      .poll(() => collector.metric('request_budget_collector_forward_retries_total{downstream="otlp"}'), { timeout: 10_000 })
      .toBeGreaterThanOrEqual(3);
    // Children reach the queue as they arrive, roots once their window closes (retries may begin with the first ones).
    await expect.poll(() => collector.metric('request_budget_collector_queue_spans{downstream="otlp"}'), { timeout: 10_000 }).toBe(5 * SPANS_PER_TRACE);
    await collector.waitForLine(
      /otlp: could not send \d+ span\(s\) to http:\/\/127\.0\.0\.1:\d+\/v1\/traces: ECONNREFUSED; retrying with backoff/,
      5000,
      'stderr',
    );

    const downstream = await downstreamOn(port);
    await expect.poll(() => downstream.spans.length, { timeout: 10_000 }).toBe(5 * SPANS_PER_TRACE);
    expectDeliveredOnce(downstream, traces);
    await expect.poll(() => collector.metric('request_budget_collector_forwarded_spans_total{downstream="otlp"}'), { timeout: 5000 }).toBe(5 * SPANS_PER_TRACE);
    expect(await collector.metric('request_budget_collector_queue_spans{downstream="otlp"}')).toBe(0);
    await collector.waitForLine(/otlp: http:\/\/127\.0\.0\.1:\d+\/v1\/traces accepts spans again/, 5000, 'stderr');
  });

  it('waits as long as its Retry-After says, and a refusal that is not retryable is dropped and counted', async () => {
    const downstream = await downstreamOn(undefined, (attempt) => (attempt < 2 ? { status: 503, headers: { 'retry-after': '1' } } : { status: 200 }));
    // One request at a time: the children's batch (forwarded as they came) is refused twice, then
    // accepted; the roots' batch (judged a grace period later) waits for it, then goes at once.
    const collector = await collectorFor(downstream.url, { '--forward-concurrency': '1', '--grace-period': '500ms' });
    const traces = await sendTraces(collector, 1);
    await expect.poll(() => downstream.spans.length, { timeout: 10_000 }).toBe(SPANS_PER_TRACE);
    expect(downstream.attempts).toHaveLength(4);
    // The collector's own backoff would have been 100–200 ms.
    expect(downstream.attempts[1]! - downstream.attempts[0]!).toBeGreaterThanOrEqual(950);
    expect(downstream.attempts[2]! - downstream.attempts[1]!).toBeGreaterThanOrEqual(950);
    // The request retried was the children's; the roots came in the last one.
    expect(firstAccepted(downstream, CHILDREN_PER_TRACE)).toEqual(childIdsOf(traces).sort());
    expectDeliveredOnce(downstream, traces);

    const refusing = await downstreamOn(undefined, () => ({ status: 400 }));
    const strict = await collectorFor(refusing.url);
    await sendTraces(strict, 1);
    await expect
      .poll(() => strict.metric('request_budget_collector_dropped_spans_total{reason="downstream_rejected",downstream="otlp"}'), { timeout: 5000 })
      .toBe(SPANS_PER_TRACE);
    // Each of the two requests (the children's, then the roots') refused once, never retried.
    expect(refusing.attempts).toHaveLength(2);
    expect(await strict.metric('request_budget_collector_forward_retries_total{downstream="otlp"}')).toBe(0);
    await strict.waitForLine(
      new RegExp(
        `otlp: http://127\\.0\\.0\\.1:\\d+/v1/traces refused ${CHILDREN_PER_TRACE} span\\(s\\) with HTTP 400: status 400; dropped \\(not retryable\\)`,
      ),
      5000,
      'stderr',
    );
  });

  it('never retries sooner than its own backoff, whatever the Retry-After', async () => {
    const downstream = await downstreamOn(undefined, (attempt) => (attempt < 3 ? { status: 503, headers: { 'retry-after': '0' } } : { status: 200 }));
    // One request at a time: the children's batch takes the first four attempts, the roots' the fifth.
    const collector = await collectorFor(downstream.url, { '--forward-concurrency': '1', '--grace-period': '500ms' });
    const traces = await sendTraces(collector, 1);
    await expect.poll(() => downstream.spans.length, { timeout: 10_000 }).toBe(SPANS_PER_TRACE);
    expect(downstream.attempts).toHaveLength(5);
    // Backoff 100, 200, 400 ms, ±20 %: not the tight loop a Retry-After of 0 asks for.
    const gaps = downstream.attempts.slice(1, 4).map((at, index) => at - downstream.attempts[index]!);
    expect(gaps).toHaveLength(3);
    gaps.forEach((gap, index) => expect(gap).toBeGreaterThanOrEqual(75 * 2 ** index));
    expect(firstAccepted(downstream, CHILDREN_PER_TRACE)).toEqual(childIdsOf(traces).sort());
    expectDeliveredOnce(downstream, traces);
  });
});

describe('a full queue', () => {
  it('answers senders 503 with Retry-After, counts the refused spans, and is not ready until it drains', async () => {
    const port = await freePort();
    const collector = await collectorFor(`http://127.0.0.1:${port}`, { '--max-queue-spans': String(2 * SPANS_PER_TRACE) });
    const accepted = await sendTraces(collector, 2);
    await expect
      .poll(() => collector.metric('request_budget_collector_forward_retries_total{downstream="otlp"}'), { timeout: 10_000 })
      .toBeGreaterThanOrEqual(1);

    const refused = await postOtlp(collector.tracesUrl, toOtlpProtobuf(ordersTrace()), 'application/x-protobuf');
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    await refused.arrayBuffer();
    const ready = await fetch(`${collector.url}/readyz`);
    expect([ready.status, await ready.text()]).toEqual([503, `not ready: queue full (${2 * SPANS_PER_TRACE} of ${2 * SPANS_PER_TRACE} spans held)\n`]);
    expect(await collector.metric('request_budget_collector_dropped_spans_total{reason="queue_full",downstream="none"}')).toBe(SPANS_PER_TRACE);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="protobuf",code="503"}')).toBe(1);
    await collector.waitForLine(new RegExp(`queue full: refused ${SPANS_PER_TRACE} span\\(s\\) with 503 \\+ Retry-After`), 5000, 'stderr');

    const downstream = await downstreamOn(port);
    // The queue drains batch by batch (a trace's children and its roots apart): ready again once
    // everything accepted is delivered, when a whole trace fits again.
    await expect.poll(() => downstream.spans.length, { timeout: 10_000 }).toBe(2 * SPANS_PER_TRACE);
    await expect.poll(async () => (await fetch(`${collector.url}/readyz`)).status, { timeout: 5000 }).toBe(200);
    expect(await collector.metric('request_budget_collector_queue_spans{downstream="otlp"}')).toBe(0);
    const later = await sendTraces(collector, 1);
    await expect.poll(() => downstream.spans.length, { timeout: 10_000 }).toBe(3 * SPANS_PER_TRACE);
    expectDeliveredOnce(downstream, [...accepted, ...later]);
  });
});

describe('a full trace window', () => {
  it('judges the oldest trace at once when --max-traces are held, and says so once with the fix', async () => {
    const downstream = await downstreamOn(await freePort());
    const collector = await collectorFor(downstream.url, { '--max-traces': '2', '--grace-period': '30s', '--max-trace-wait': '60s' });
    const traces = await sendTraces(collector, 3);
    // Every trace's children went as they came. The third trace's first span made room by judging
    // the first trace, long before its 30 s grace period: its roots went too; the others' are held.
    await expect.poll(() => downstream.spans.length, { timeout: 10_000 }).toBe(3 * CHILDREN_PER_TRACE + ROOTS_PER_TRACE);
    expectDeliveredOnce(downstream, traces.slice(0, 1), traces.slice(1));
    expect(await collector.metric('request_budget_collector_flushed_traces_total{reason="traces_full"}')).toBe(1);
    expect(await collector.metric('request_budget_collector_traces_in_memory')).toBe(2);
    expect(await collector.metric('request_budget_collector_spans_in_memory')).toBe(2 * ROOTS_PER_TRACE);
    expect(await collector.metric('request_budget_collector_span_records_in_memory')).toBe(2 * CHILDREN_PER_TRACE);
    await collector.waitForLine(
      /--max-traces \(2\) reached: 1 trace\(s\) judged before their grace period ended \(spans of theirs still on the way are judged apart, counted as late\); raise --max-traces, memory stays bounded by --memory-limit$/,
      5000,
      'stderr',
    );
  });
});

/** A request whose headers and first bytes have reached the collector's handler; `finish()` sends the rest. */
async function holdOpen(collector: CollectorProcess, body: Buffer) {
  // 100-continue: the collector has the request's headers (its handler has run) when the client hears "continue".
  const request = http.request(collector.tracesUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf', 'content-length': String(body.length), expect: '100-continue' },
    signal: AbortSignal.timeout(10_000),
  });
  const answered = new Promise<http.IncomingMessage>((resolve, reject) => request.on('response', resolve).on('error', reject));
  await new Promise<void>((resolve) => request.once('continue', resolve).flushHeaders());
  request.write(body.subarray(0, 10));
  return {
    answered,
    finish: () => request.end(body.subarray(10)),
  };
}

async function bodyOf(response: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('too many requests at once', () => {
  it('answers a request beyond --max-concurrent-requests 503 with Retry-After: 1 before reading its body, counts it, and takes requests again once the others end', async () => {
    const limit = 3;
    const downstream = await downstreamOn();
    const collector = await collectorFor(downstream.url, { '--max-concurrent-requests': String(limit) });
    const traces = Array.from({ length: limit }, () => ordersTrace());
    const held = [];
    for (const trace of traces) held.push(await holdOpen(collector, Buffer.from(toOtlpProtobuf(trace))));

    // One more, its body unfinished too: answered at once, without waiting for the rest of it.
    const extra = await holdOpen(collector, Buffer.from(toOtlpProtobuf(ordersTrace())));
    const refused = await extra.answered;
    expect([refused.statusCode, refused.headers['retry-after'], refused.headers['content-type']]).toEqual([503, '1', 'application/x-protobuf']);
    const RpcStatus = otlpRoot.lookupType('google.rpc.Status');
    expect(RpcStatus.toObject(RpcStatus.decode(await bodyOf(refused)))).toEqual({
      code: 14,
      message: `too many requests at once (${limit} already being received, the limit of --max-concurrent-requests); retry later`,
    });
    extra.finish();

    for (const request of held) request.finish();
    const answers = await Promise.all(
      held.map(async ({ answered }) => {
        const response = await answered;
        response.resume();
        return response.statusCode;
      }),
    );
    expect(answers).toEqual(Array.from({ length: limit }, () => 200));
    const later = await sendTraces(collector, 1);
    await expect.poll(() => downstream.spans.length, { timeout: 10_000 }).toBe((limit + 1) * SPANS_PER_TRACE);
    expectDeliveredOnce(downstream, [...traces, ...later]);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="protobuf",code="503"}')).toBe(1);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="protobuf",code="200"}')).toBe(limit + 1);
    await collector.waitForLine(
      /too many requests at once: refused 1 request\(s\) beyond --max-concurrent-requests \(3\) with 503 \+ Retry-After: 1/,
      5000,
      'stderr',
    );
  });
});

describe('shutdown', () => {
  it('on SIGTERM, judges and delivers the traces still held and the batches in flight, then exits 0', async () => {
    const downstream = await downstreamOn(undefined, () => ({ status: 200, delayMs: 300 }));
    // Traces are held for 30 s unless shutdown flushes them.
    const collector = await collectorFor(downstream.url, { '--grace-period': '30s', '--max-batch-spans': String(SPANS_PER_TRACE) });
    const traces = await sendTraces(collector, 4);
    expect(await collector.metric('request_budget_collector_traces_in_memory')).toBe(4);
    // Held whole: the roots only (their children went as they came: in flight now, or queued).
    expect(await collector.metric('request_budget_collector_spans_in_memory')).toBe(4 * ROOTS_PER_TRACE);
    expect(await collector.metric('request_budget_collector_span_records_in_memory')).toBe(4 * CHILDREN_PER_TRACE);
    const stopping = Date.now();
    expect(await collector.stop('SIGTERM', 10_000)).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(5000);
    expectDeliveredOnce(downstream, traces);
    expect(collector.stderrLines).toContain('request-budget-collector: SIGTERM: delivering what is held (at most 10000 ms), then exiting');
    expect(collector.stderrLines.at(-1)).toBe('request-budget-collector: stopped');
  });

  it('answers 503 to a request whose body was still arriving when shutdown began, instead of taking spans it would not deliver', async () => {
    const downstream = await downstreamOn(undefined, () => ({ status: 200, delayMs: 1000 }));
    const collector = await collectorFor(downstream.url, { '--grace-period': '30s' });
    const held = await sendTraces(collector, 1); // delivered slowly at shutdown: the window this test needs
    const body = Buffer.from(toOtlpProtobuf(ordersTrace()));
    // 100-continue: the collector has the request's headers (its handler has run) when the client hears "continue".
    const request = http.request(collector.tracesUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf', 'content-length': String(body.length), expect: '100-continue' },
    });
    const answered = new Promise<http.IncomingMessage>((resolve, reject) => request.on('response', resolve).on('error', reject));
    await new Promise<void>((resolve) => request.once('continue', resolve).flushHeaders());
    request.write(body.subarray(0, 10));

    const stopped = collector.stop('SIGTERM', 10_000);
    await collector.waitForLine(/SIGTERM: delivering what is held/, 5000, 'stderr');
    request.end(body.subarray(10));
    const response = await answered;
    response.resume();
    expect([response.statusCode, response.headers['retry-after']]).toEqual([503, '5']);
    expect(await stopped).toBe(0);
    expectDeliveredOnce(downstream, held);
  });

  it('stops at --shutdown-timeout when the alert webhook does not answer', async () => {
    const posts: http.IncomingMessage[] = [];
    const silent = http.createServer((req) => posts.push(req)); // never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const downstream = await downstreamOn();
      const collector = await collectorFor(downstream.url, {
        '--webhook-url': `http://127.0.0.1:${(silent.address() as AddressInfo).port}/`,
        '--shutdown-timeout': '500ms',
      });
      await sendTraces(collector, 1);
      await expect.poll(() => posts.length, { timeout: 5000 }).toBe(1);
      const stopping = Date.now();
      expect(await collector.stop('SIGTERM', 10_000)).toBe(0);
      expect(Date.now() - stopping).toBeLessThan(3000);
      expect(collector.stderrLines).toContain(
        'request-budget-collector: shutdown deadline reached with alerts still being sent; those not delivered are dropped (see request_budget_collector_alerts)',
      );
    } finally {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('with the downstream down, stops at --shutdown-timeout and says what it dropped', async () => {
    const collector = await collectorFor(`http://127.0.0.1:${await freePort()}`, { '--shutdown-timeout': '500ms' });
    await sendTraces(collector, 2);
    const stopping = Date.now();
    expect(await collector.stop('SIGTERM', 10_000)).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(3000);
    expect(collector.stderrLines).toContainEqual(
      expect.stringMatching(
        new RegExp(`otlp: shutdown deadline reached with ${2 * SPANS_PER_TRACE} span\\(s\\) not delivered to http://127\\.0\\.0\\.1:\\d+/v1/traces; dropped`),
      ),
    );
  });
});
