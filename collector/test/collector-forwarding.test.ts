/**
 * Forwarding under failure and load, with the collector as a child process and real HTTP
 * downstreams in this process: a downstream answering 500 for a while gets every accepted span
 * exactly once when it recovers; a 400 is final, counted once per batch and logged once per
 * interval; several requests are under way at once to a slow downstream, and a slow downstream
 * does not hold back another.
 *
 * Spans that cannot be roots (all but the two SERVER spans of a trace) are forwarded as they
 * arrive; the roots follow, judged, a grace period later, usually in another request.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { startZipkinReceiver, type ZipkinReceiver } from '../../test/support/zipkin-receiver';
import { COLLECTOR_BUDGETS, startCollectorProcess, type CollectorProcess } from './support/collector-process';
import { startDownstream, type Answer, type DownstreamServer } from './support/downstream-server';
import { Kind, ordersTrace, postOtlp, toOtlpProtobuf } from './support/synthetic-trace';

const SPANS_PER_TRACE = ordersTrace().spans.length;
/** Spans that may be roots (SERVER, CONSUMER) are held until their trace is judged; the others, its children here, are forwarded as they arrive. */
const ROOTS_PER_TRACE = ordersTrace().spans.filter((span) => span.kind === Kind.SERVER || span.kind === Kind.CONSUMER).length;
const CHILDREN_PER_TRACE = SPANS_PER_TRACE - ROOTS_PER_TRACE;
const started: { collectors: CollectorProcess[]; servers: (DownstreamServer | ZipkinReceiver)[] } = { collectors: [], servers: [] };

afterEach(async () => {
  await Promise.all(started.collectors.splice(0).map((collector) => collector.stop('SIGKILL')));
  await Promise.all(started.servers.splice(0).map((server) => server.close()));
});

async function collectorWith(options: Record<string, string>): Promise<CollectorProcess> {
  const flags = { '--budgets': COLLECTOR_BUDGETS, '--grace-period': '100ms', '--retry-initial-backoff': '100ms', '--retry-max-backoff': '400ms', ...options };
  const collector = await startCollectorProcess(Object.entries(flags).flat());
  started.collectors.push(collector);
  return collector;
}

async function downstream(answer?: (attempt: number) => Answer): Promise<DownstreamServer> {
  const server = await startDownstream(undefined, answer);
  started.servers.push(server);
  return server;
}

async function sendTraces(collector: CollectorProcess, count: number): Promise<ReturnType<typeof ordersTrace>[]> {
  const traces = Array.from({ length: count }, () => ordersTrace());
  for (const trace of traces) expect((await postOtlp(collector.tracesUrl, toOtlpProtobuf(trace), 'application/x-protobuf')).status).toBe(200);
  return traces;
}

const spanIdsOf = (traces: ReturnType<typeof ordersTrace>[]) => traces.flatMap((trace) => trace.spans.map((span) => span.spanId)).sort();

/** Every `dropped_spans_total` series of the collector, summed. */
async function droppedSpans(collector: CollectorProcess): Promise<number> {
  let total = 0;
  for (const [series, value] of await collector.metrics()) if (series.startsWith('request_budget_collector_dropped_spans_total{')) total += value;
  return total;
}

describe('a downstream answering 500', () => {
  it('is retried with backoff while it fails, then gets every accepted span exactly once; each retry is counted', async () => {
    let failUntil = Infinity;
    let answered500 = 0;
    const target = await downstream(() => {
      if (Date.now() >= failUntil) return { status: 200 };
      answered500 += 1;
      return { status: 500 };
    });
    const collector = await collectorWith({ '--otlp-endpoint': target.url, '--max-batch-spans': String(3 * SPANS_PER_TRACE), '--forward-concurrency': '4' });
    failUntil = Date.now() + 2500;
    const traces = await sendTraces(collector, 20);

    await expect.poll(() => target.spans.length, { timeout: 15_000 }).toBe(20 * SPANS_PER_TRACE);
    expect(Date.now()).toBeGreaterThanOrEqual(failUntil);
    const ids = target.spans.map((span) => span.spanId).sort();
    expect(ids).toEqual(spanIdsOf(traces)); // each exactly once: none lost, none twice
    // Every batch was refused at least once: 20 traces' spans in batches of 3 traces' worth, 7 batches at the least.
    expect(answered500).toBeGreaterThanOrEqual(7);
    await expect
      .poll(() => collector.metric('request_budget_collector_forwarded_spans_total{downstream="otlp"}'), { timeout: 5000 })
      .toBe(20 * SPANS_PER_TRACE);
    // One retry per 500 answer, as the downstream itself counted them; nothing dropped, nothing left.
    expect(await collector.metric('request_budget_collector_forward_retries_total{downstream="otlp"}')).toBe(answered500);
    expect(await droppedSpans(collector)).toBe(0);
    expect(await collector.metric('request_budget_collector_queue_spans{downstream="otlp"}')).toBe(0);
    await collector.waitForLine(
      /otlp: could not send \d+ span\(s\) to http:\/\/127\.0\.0\.1:\d+\/v1\/traces: HTTP 500: status 500; retrying with backoff/,
      5000,
      'stderr',
    );
    await collector.waitForLine(/otlp: http:\/\/127\.0\.0\.1:\d+\/v1\/traces accepts spans again/, 5000, 'stderr');
  });

  it('gives up on a batch after --retry-max-elapsed, and counts it as retries_exhausted', async () => {
    const target = await downstream(() => ({ status: 500 }));
    // A grace period well past the batch linger (50 ms): the roots' batch never joins the children's.
    const collector = await collectorWith({ '--otlp-endpoint': target.url, '--retry-max-elapsed': '1s', '--grace-period': '500ms' });
    await sendTraces(collector, 1);
    await expect
      .poll(() => collector.metric('request_budget_collector_dropped_spans_total{reason="retries_exhausted",downstream="otlp"}'), { timeout: 10_000 })
      .toBe(SPANS_PER_TRACE);
    expect(await droppedSpans(collector)).toBe(SPANS_PER_TRACE);
    expect(target.spans).toHaveLength(0);
    // Two batches, each given up on its own: the children's (forwarded as they came), then the roots' (a grace period later).
    const gaveUp = await Promise.all(
      [CHILDREN_PER_TRACE, ROOTS_PER_TRACE].map((count) =>
        collector.waitForLine(new RegExp(`otlp: gave up on ${count} span\\(s\\) after (\\d+) attempt\\(s\\) over \\d+ ms`), 5000, 'stderr'),
      ),
    );
    const attempts = gaveUp.map((match) => Number(match[1]));
    // Backoff 100, 200, 400, 400 ms (±20 %) fits in 1 s: 3 to 5 attempts a batch, each after its first a retry.
    for (const count of attempts) {
      expect(count).toBeGreaterThanOrEqual(3);
      expect(count).toBeLessThanOrEqual(5);
    }
    expect(target.attempts).toHaveLength(attempts[0]! + attempts[1]!);
    expect(await collector.metric('request_budget_collector_forward_retries_total{downstream="otlp"}')).toBe(target.attempts.length - 2);
  });
});

describe('a downstream answering 400', () => {
  it('drops each batch at once, counts it once, and logs the refusals once per interval', async () => {
    const target = await downstream(() => ({ status: 400 }));
    // Two spans per batch: a trace's children (12, forwarded as they came) and its roots (2, once
    // judged) fill whole batches, each sent at once, whatever the timing: 3 × 7 batches, each refused.
    const BATCH = 2;
    expect([CHILDREN_PER_TRACE % BATCH, ROOTS_PER_TRACE % BATCH]).toEqual([0, 0]);
    const batches = (3 * SPANS_PER_TRACE) / BATCH;
    const collector = await collectorWith({ '--otlp-endpoint': target.url, '--max-batch-spans': String(BATCH) });
    await sendTraces(collector, 3);
    await expect
      .poll(() => collector.metric('request_budget_collector_dropped_spans_total{reason="downstream_rejected",downstream="otlp"}'), { timeout: 5000 })
      .toBe(3 * SPANS_PER_TRACE);
    expect(target.attempts).toHaveLength(batches); // never retried
    expect(await collector.metric('request_budget_collector_forward_retries_total{downstream="otlp"}')).toBe(0);
    expect(await droppedSpans(collector)).toBe(3 * SPANS_PER_TRACE);

    const refusals = () => collector.stderrLines.filter((line) => line.includes(' refused '));
    await sleep(200);
    expect(refusals()).toEqual([
      expect.stringMatching(
        new RegExp(`otlp: http://127\\.0\\.0\\.1:\\d+/v1/traces refused ${BATCH} span\\(s\\) with HTTP 400: status 400; dropped \\(not retryable\\)$`),
      ),
    ]);
    // The rest of the streak is said at the interval's end, or at shutdown.
    expect(await collector.stop('SIGTERM', 10_000)).toBe(0);
    expect(refusals()).toHaveLength(2);
    expect(refusals()[1]).toMatch(
      new RegExp(
        `otlp: http://127\\.0\\.0\\.1:\\d+/v1/traces refused ${3 * SPANS_PER_TRACE - BATCH} more span\\(s\\) in ${batches - 1} request\\(s\\) with HTTP 400; dropped`,
      ),
    );
  });
});

describe('several requests in flight', () => {
  it('sends --forward-concurrency batches at once to a slow downstream: throughput scales, and the downstream sees exactly that many at once', async () => {
    const slow = { status: 200, delayMs: 200 };
    const [one, four] = await Promise.all([downstream(() => slow), downstream(() => slow)]);
    const batchFlags = { '--max-batch-spans': String(SPANS_PER_TRACE), '--grace-period': '50ms' };
    const [serial, parallel] = await Promise.all([
      collectorWith({ '--otlp-endpoint': one.url, '--forward-concurrency': '1', ...batchFlags }),
      collectorWith({ '--otlp-endpoint': four.url, '--forward-concurrency': '4', ...batchFlags }),
    ]);
    // More than either can deliver in the window: 100 traces' spans, in batches of a trace's worth.
    await Promise.all([sendTraces(serial, 100), sendTraces(parallel, 100)]);

    /** Spans a downstream accepted in 2 s from its first request. */
    const deliveredInWindow = async (target: DownstreamServer) => {
      await expect.poll(() => target.attempts.length, { timeout: 5000, interval: 5 }).toBeGreaterThan(0);
      const before = target.spans.length;
      await sleep(2000);
      return target.spans.length - before;
    };
    const [serialSpans, parallelSpans] = await Promise.all([deliveredInWindow(one), deliveredInWindow(four)]);
    expect(serialSpans).toBeGreaterThan(0);
    expect(parallelSpans / serialSpans).toBeGreaterThan(2.5);
    expect([one.maxInFlight, four.maxInFlight]).toEqual([1, 4]);
  });

  it('a downstream that takes seconds to answer does not hold back another', async () => {
    const stalled = await downstream(() => ({ status: 200, delayMs: 3000 }));
    const zipkin = await startZipkinReceiver();
    started.servers.push(zipkin);
    const collector = await collectorWith({ '--otlp-endpoint': stalled.url, '--zipkin-endpoint': zipkin.spansUrl, '--forward-concurrency': '1' });
    const sentAt = Date.now();
    const traces = await sendTraces(collector, 3);
    await zipkin.waitFor((spans) => spans.length === 3 * SPANS_PER_TRACE, { timeoutMs: 2500 });
    expect(stalled.spans).toHaveLength(0); // still waiting for its first answer
    expect(Date.now() - sentAt).toBeLessThan(3000);
    await expect.poll(() => stalled.spans.length, { timeout: 15_000 }).toBe(3 * SPANS_PER_TRACE);
    expect(zipkin.spans.map((span) => span.id).sort()).toEqual(spanIdsOf(traces));
  });
});
