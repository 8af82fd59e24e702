/**
 * How a downstream batches what it is given: spans come a request's worth at a time (the trace
 * window forwards the spans that cannot be roots as they arrive), and a request per arrival would
 * cost more than the spans. A batch goes when full, or BATCH_LINGER_MS after its first span came,
 * and at once when the collector drains at shutdown.
 */
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BATCH_LINGER_MS, Downstream } from '../src/exporter/downstream';
import { decodedSpans } from './support/decoded-spans';
import { downstreamOptionsFor, startDownstream, type DownstreamServer } from './support/downstream-server';
import { newTraceId } from './support/synthetic-trace';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function downstreamTo(maxBatchSpans: number): Promise<{ server: DownstreamServer; downstream: Downstream; forwarded: number[] }> {
  const server = await startDownstream();
  const forwarded: number[] = [];
  const downstream = new Downstream(
    downstreamOptionsFor(server, { maxBatchSpans, concurrency: 4, requestTimeoutMs: 5000, onForwarded: (count) => forwarded.push(count) }),
  );
  cleanups.push(async () => {
    await downstream.drain(Date.now());
    await server.close();
  });
  return { server, downstream, forwarded };
}

const spans = (count: number) =>
  decodedSpans(
    newTraceId(),
    Array.from({ length: count }, () => ({})),
  );

describe('a downstream batch', () => {
  it('that is not full waits for more spans: what comes within the linger goes in one request, no sooner than the linger', async () => {
    const { server, downstream, forwarded } = await downstreamTo(512);
    const enqueuedAt = performance.now();
    const enqueuedAtEpoch = Date.now();
    downstream.enqueue(spans(3));
    await new Promise((resolve) => setTimeout(resolve, 5));
    downstream.enqueue(spans(2));
    await expect.poll(() => forwarded, { timeout: 5000 }).toEqual([5]);
    expect(performance.now() - enqueuedAt).toBeGreaterThanOrEqual(BATCH_LINGER_MS);
    expect(server.attempts).toHaveLength(1);
    expect(server.attempts[0]! - enqueuedAtEpoch).toBeGreaterThanOrEqual(BATCH_LINGER_MS - 1);
    expect(server.spans).toHaveLength(5);
  });

  it('that is full goes without waiting for one still filling', async () => {
    const { server, downstream, forwarded } = await downstreamTo(4);
    // The clock stands still: a batch that is not full never ends its linger, one that is full goes.
    const now = performance.now();
    const clock = vi.spyOn(performance, 'now').mockReturnValue(now);
    cleanups.unshift(async () => clock.mockRestore());
    downstream.enqueue(spans(9));
    await expect.poll(() => forwarded, { timeout: 5000 }).toEqual([4, 4]);
    await new Promise((resolve) => setTimeout(resolve, 3 * BATCH_LINGER_MS));
    expect(forwarded).toEqual([4, 4]);
    expect(downstream.depth).toBe(1);
    await downstream.drain(Date.now() + 60_000);
    expect(forwarded).toEqual([4, 4, 1]);
    expect(server.spans).toHaveLength(9);
  });

  it('goes at once when the downstream drains at shutdown', async () => {
    const { server, downstream, forwarded } = await downstreamTo(512);
    downstream.enqueue(spans(3));
    // A deadline far off: drain resolves once what was queued is delivered.
    await downstream.drain(Date.now() + 60_000);
    expect(forwarded).toEqual([3]);
    expect(server.spans).toHaveLength(3);
    expect(downstream.depth).toBe(0);
  });
});
