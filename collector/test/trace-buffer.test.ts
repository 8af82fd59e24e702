/**
 * The trace window: a trace is held until its root has arrived plus the grace period (at most the
 * maximum wait from its first span), bounded in traces and spans per trace, and a full buffer
 * hands on its oldest trace as it is — never drops it.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CollectedSpan } from '../src/otlp/otlp-model';
import { TraceBuffer, type FlushReason } from '../src/processor/trace-buffer';
import { decodedSpans } from './support/decoded-spans';
import { Kind, newTraceId, type SyntheticSpan } from './support/synthetic-trace';

const buffers: TraceBuffer[] = [];
afterEach(() => buffers.splice(0).forEach((buffer) => buffer.close()));

const spansOf = (traceId: string, spans: Partial<SyntheticSpan>[]): CollectedSpan[] => decodedSpans(traceId, spans);

function bufferWith(options: Partial<ConstructorParameters<typeof TraceBuffer>[0]> = {}) {
  const flushed: { traceId: string; spans: number; reason: FlushReason; atMs: number }[] = [];
  let late = 0;
  const buffer = new TraceBuffer({
    graceMs: 100,
    maxWaitMs: 400,
    maxTraces: 100,
    maxSpansPerTrace: 100,
    onFlush: (spans, reason) => flushed.push({ traceId: spans[0]!.traceId, spans: spans.length, reason, atMs: Date.now() }),
    onError: (error) => {
      throw error;
    },
    onLateSpans: (count) => (late += count),
    ...options,
  });
  buffers.push(buffer);
  return { buffer, flushed, late: () => late };
}

describe('the trace window', () => {
  it('holds a trace until its root plus the grace period, children arriving meanwhile included', async () => {
    // A long maximum wait, so that only the root and the grace period can close this window.
    const { buffer, flushed } = bufferWith({ maxWaitMs: 5000 });
    const traceId = newTraceId();
    buffer.add(spansOf(traceId, [{}, {}]));
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(flushed).toEqual([]); // no root yet: waits up to maxWait
    buffer.add(spansOf(traceId, [{ kind: Kind.SERVER }]));
    const rootAt = Date.now();
    buffer.add(spansOf(traceId, [{}]));
    expect([buffer.traceCount, buffer.spanCount]).toEqual([1, 4]);
    await expect.poll(() => flushed.length, { timeout: 2000 }).toBe(1);
    expect(flushed[0]).toMatchObject({ traceId, spans: 4, reason: 'root_grace' });
    expect(flushed[0]!.atMs - rootAt).toBeGreaterThanOrEqual(95);
    expect([buffer.traceCount, buffer.spanCount]).toEqual([0, 0]);
  });

  it('moves the deadline on when a later root of the trace comes, and flushes it then', async () => {
    const { buffer, flushed } = bufferWith({ graceMs: 200, maxWaitMs: 5000 });
    const traceId = newTraceId();
    buffer.add(spansOf(traceId, [{ kind: Kind.SERVER }]));
    await new Promise((resolve) => setTimeout(resolve, 120));
    // A consumer span of the same trace (a job the request enqueued): a grace period from now.
    buffer.add(spansOf(traceId, [{ kind: Kind.CONSUMER }]));
    const secondRootAt = Date.now();
    await expect.poll(() => flushed.length, { timeout: 2000 }).toBe(1);
    expect(flushed[0]).toMatchObject({ traceId, spans: 2, reason: 'root_grace' });
    expect(flushed[0]!.atMs - secondRootAt).toBeGreaterThanOrEqual(195);
  });

  it('flushes traces due by their root while one without a root waits at the front, then that one at its maximum wait', async () => {
    const { buffer, flushed } = bufferWith({ graceMs: 20, maxWaitMs: 600, maxTraces: 5000 });
    const waiting = newTraceId();
    const started = Date.now();
    buffer.add(spansOf(waiting, [{}]));
    const rooted = Array.from({ length: 1500 }, () => newTraceId());
    for (const id of rooted) buffer.add(spansOf(id, [{ kind: Kind.SERVER, parentSpanId: undefined }]));
    await expect.poll(() => flushed.length, { timeout: 2000 }).toBe(1500);
    expect(flushed.map((flush) => flush.traceId)).toEqual(rooted);
    expect(new Set(flushed.map((flush) => flush.reason))).toEqual(new Set(['root_grace']));
    expect(buffer.traceCount).toBe(1);
    await expect.poll(() => flushed.length, { timeout: 2000 }).toBe(1501);
    expect(flushed[1500]).toMatchObject({ traceId: waiting, reason: 'max_wait' });
    expect(flushed[1500]!.atMs - started).toBeGreaterThanOrEqual(595);
  });

  it('keeps its deadlines when the wall clock is stepped back', async () => {
    const { buffer, flushed } = bufferWith({ graceMs: 100, maxWaitMs: 5000 });
    const [first, second] = [newTraceId(), newTraceId()];
    buffer.add(spansOf(first, [{ kind: Kind.SERVER }]));
    // An hour back (NTP, a VM resumed): a trace due by the wall clock would wait an hour.
    const wall = Date.now;
    const stepped = vi.spyOn(Date, 'now').mockImplementation(() => wall() - 3_600_000);
    try {
      buffer.add(spansOf(second, [{ kind: Kind.SERVER }]));
      await expect.poll(() => flushed.map((flush) => flush.traceId).sort(), { timeout: 1500 }).toEqual([first, second].sort());
    } finally {
      stepped.mockRestore();
    }
  });

  it('flushes a trace whose root never comes after the maximum wait', async () => {
    const { buffer, flushed } = bufferWith();
    const traceId = newTraceId();
    const started = Date.now();
    buffer.add(spansOf(traceId, [{}]));
    await expect.poll(() => flushed.length, { timeout: 2000 }).toBe(1);
    expect(flushed[0]).toMatchObject({ traceId, spans: 1, reason: 'max_wait' });
    expect(flushed[0]!.atMs - started).toBeGreaterThanOrEqual(395);
  });

  it('when full, hands on the oldest trace as it is; a full trace is handed on at once', () => {
    const { buffer, flushed, late } = bufferWith({ maxTraces: 2, maxSpansPerTrace: 3, graceMs: 10_000, maxWaitMs: 10_000 });
    const [a, b, c] = [newTraceId(), newTraceId(), newTraceId()];
    buffer.add(spansOf(a, [{}]));
    buffer.add(spansOf(b, [{}, {}]));
    buffer.add(spansOf(c, [{}]));
    expect(flushed.map((flush) => [flush.traceId, flush.spans, flush.reason])).toEqual([[a, 1, 'traces_full']]);
    buffer.add(spansOf(b, [{}, {}]));
    expect(flushed.map((flush) => [flush.traceId, flush.spans, flush.reason])).toEqual([
      [a, 1, 'traces_full'],
      [b, 3, 'trace_full'],
    ]);
    expect([buffer.traceCount, buffer.spanCount]).toEqual([2, 2]); // c, and b's fourth span in a new window
    expect(late()).toBe(1);
    buffer.flushAll();
    expect(flushed.map((flush) => flush.reason).slice(2)).toEqual(['shutdown', 'shutdown']);
    expect(flushed.reduce((sum, flush) => sum + flush.spans, 0)).toBe(6);
  });

  it('turned over many times, flushes the oldest still held, skipping those the sweep took, and counts late spans of the last maxTraces flushes only', async () => {
    const { buffer, flushed, late } = bufferWith({ maxTraces: 3, graceMs: 20, maxWaitMs: 10_000 });
    const ids = Array.from({ length: 3000 }, () => newTraceId());
    // 3000 traces through a window of 3: each new one flushes the oldest.
    for (const id of ids) buffer.add(spansOf(id, [{}]));
    expect(flushed.map((flush) => flush.traceId)).toEqual(ids.slice(0, 2997));
    // A root makes the middle trace due; the sweep flushes it, and the next full window skips it.
    buffer.add(spansOf(ids[2998]!, [{ kind: Kind.SERVER, parentSpanId: undefined }]));
    await expect.poll(() => flushed.length, { timeout: 2000 }).toBe(2998);
    expect(flushed[2997]).toMatchObject({ traceId: ids[2998], spans: 2, reason: 'root_grace' });
    // Two held: a third fits, a fourth flushes the oldest still held.
    buffer.add(spansOf(newTraceId(), [{}]));
    expect(flushed).toHaveLength(2998);
    buffer.add(spansOf(newTraceId(), [{}]));
    expect(flushed[2998]).toMatchObject({ traceId: ids[2997], reason: 'traces_full' });
    // Late: a span of one of the last 3 traces flushed; not of one flushed 3 flushes or more ago.
    expect(late()).toBe(0);
    buffer.add(spansOf(ids[2997]!, [{}]));
    expect(late()).toBe(1);
    buffer.add(spansOf(ids[2990]!, [{}]));
    expect(late()).toBe(1);
  });

  it('counts a span as late exactly when its trace is one of the last maxTraces flushed, however ids recur', () => {
    // A model beside the window: 3000 spans of 6 trace ids, added one at a time; the window holds
    // 3 traces of at most 2 spans, so a trace is flushed when the window is full or when it is.
    const flushes: { id: string; reason: FlushReason }[] = [];
    const { buffer, late } = bufferWith({
      maxTraces: 3,
      maxSpansPerTrace: 2,
      maxWaitMs: 60_000,
      onFlush: (spans, reason) => flushes.push({ id: spans[0]!.traceId, reason }),
    });
    const ids = Array.from({ length: 6 }, () => newTraceId());
    let expected = 0;
    let seed = 7;
    for (let index = 0; index < 3000; index += 1) {
      seed = (seed * 48271) % 2147483647;
      const id = ids[seed % ids.length]!;
      const before = flushes.length;
      buffer.add(spansOf(id, [{}]));
      // The window makes room (flushing its oldest) before it looks; a trace the span fills is flushed after.
      const filled = flushes.length > before && flushes.at(-1)!.reason === 'trace_full' ? 1 : 0;
      if (
        flushes
          .slice(0, flushes.length - filled)
          .slice(-3)
          .some((flush) => flush.id === id)
      )
        expected += 1;
      expect(late()).toBe(expected);
    }
    // Ids came back after their flush, and some were flushed twice within three flushes.
    expect(expected).toBeGreaterThan(500);
    expect(flushes.some((flush, index) => flushes[index - 1]?.id === flush.id || flushes[index - 2]?.id === flush.id)).toBe(true);
  });

  it('judges the traces of a sweep in slices, the event loop free in between', async () => {
    const busyMs = 2;
    const { buffer, flushed } = bufferWith({
      graceMs: 10,
      onFlush: (spans, reason) => {
        // Each trace takes 2 ms to judge: the 20 below would hold the event loop 40 ms in one go.
        const until = performance.now() + busyMs;
        while (performance.now() < until);
        flushed.push({ traceId: spans[0]!.traceId, spans: spans.length, reason, atMs: Date.now() });
      },
    });
    for (let index = 0; index < 20; index += 1) buffer.add(spansOf(newTraceId(), [{ kind: Kind.SERVER, parentSpanId: undefined }]));
    // What other work saw between turns of the event loop while the sweep was under way.
    const seen: number[] = [];
    await new Promise<void>((resolve) => {
      const look = () => {
        seen.push(flushed.length);
        if (flushed.length < 20) setImmediate(look);
        else resolve();
      };
      look();
    });
    const between = seen.filter((count) => count > 0 && count < 20);
    // Slices of 5 ms at most (the sweep soon falls a 10 ms sweep interval behind here): at most 3
    // traces of 2 ms each, so the sweep ran over 7 turns at least.
    expect(new Set(between).size).toBeGreaterThanOrEqual(6);
    expect(flushed.map((flush) => flush.reason)).toEqual(Array(20).fill('root_grace'));
  });

  /**
   * `traces` root traces added at `addedAt(index)` on a clock of the test's own (performance.now, which
   * the window reads), a 1 s grace period (sweeps every 250 ms), each trace judged taking 0.6 ms of
   * that clock; the clock set to 1000 ms and the window left to sweep. Returns the number of traces
   * each slice judged: what a look at every turn of the event loop sees added.
   */
  const sweepSlices = async (traces: number, maxTraces: number, addedAt: (index: number) => number): Promise<number[]> => {
    let clock = 0;
    const now = vi.spyOn(performance, 'now').mockImplementation(() => clock);
    try {
      let flushes = 0;
      const { buffer } = bufferWith({
        graceMs: 1000,
        maxWaitMs: 60_000,
        maxTraces,
        onFlush: () => {
          clock += 0.6;
          flushes += 1;
        },
      });
      for (let index = 0; index < traces; index += 1) {
        clock = addedAt(index);
        buffer.add(spansOf(newTraceId(), [{ kind: Kind.SERVER, parentSpanId: undefined }]));
      }
      clock = 1000;
      const slices: number[] = [];
      await new Promise<void>((resolve) => {
        let seen = 0;
        const look = () => {
          if (flushes > seen) slices.push(flushes - seen);
          seen = flushes;
          if (flushes < traces) setImmediate(look);
          else resolve();
        };
        look();
      });
      expect(slices.reduce((sum, size) => sum + size, 0)).toBe(traces);
      return slices;
    } finally {
      now.mockRestore();
    }
  };

  it('yields the event loop every 1 ms, and every 5 ms while a trace is overdue by more than two sweep intervals', async () => {
    // All due at 1000: one sweep of 1000 × 0.6 = 600 ms takes them.
    const slices = await sweepSlices(1000, 2000, () => 0);
    // 1 ms slices (2 traces) until the first trace waiting is overdue by more than 500 ms (slice
    // 418 starts at 1501.6 ms), then 5 ms slices (9 traces).
    const short = slices.findIndex((size) => size !== 2);
    expect(short).toBe(418);
    expect(slices.slice(short, -1).every((size) => size === 9)).toBe(true);
  });

  it('keeps to 1 ms slices through a sweep longer than its interval that keeps up with the traces coming due', async () => {
    // Due one every 0.5 ms from 1000, judged one every 0.6 ms: the sweep runs 600 ms, its traces at
    // most 100 ms overdue.
    const slices = await sweepSlices(1000, 2000, (index) => index * 0.5);
    expect(slices.slice(0, -1).every((size) => size === 2)).toBe(true);
  });

  it('takes 5 ms slices while more than half of --max-traces is held', async () => {
    const slices = await sweepSlices(600, 1000, () => 0);
    // 600 held: 5 ms slices (9 traces) while more than 500 are held at a slice's start (12 slices),
    // then 1 ms slices (2): the sweep ends 360 ms in, no trace overdue by 500 ms.
    expect(slices.slice(0, 12)).toEqual(Array(12).fill(9));
    expect(slices.slice(12, -1).every((size) => size === 2)).toBe(true);
    expect(slices.length).toBeGreaterThan(12 + 200);
  });

  it('takes in the same sweep a trace that came due while the sweep ran, not a sweep interval later', async () => {
    // A clock of the test's own: each trace judged takes 3 ms of it, so a sweep of 10 runs 30 ms.
    let clock = 0;
    const now = vi.spyOn(performance, 'now').mockImplementation(() => clock);
    try {
      const flushedAt: { traceId: string; realMs: number }[] = [];
      // A 1 s grace period: sweeps every 250 ms (of real time).
      const { buffer } = bufferWith({
        graceMs: 1000,
        maxWaitMs: 60_000,
        onFlush: (spans) => {
          clock += 3;
          flushedAt.push({ traceId: spans[0]!.traceId, realMs: Date.now() });
        },
      });
      for (let index = 0; index < 10; index += 1) buffer.add(spansOf(newTraceId(), [{ kind: Kind.SERVER, parentSpanId: undefined }]));
      clock = 10;
      const late = newTraceId();
      buffer.add(spansOf(late, [{ kind: Kind.SERVER, parentSpanId: undefined }])); // due at 1010
      clock = 1000; // the ten are due; the sweep that takes them runs past 1010
      await expect.poll(() => flushedAt.length, { timeout: 2000 }).toBe(11);
      expect(flushedAt[10]!.traceId).toBe(late);
      // In the same sweep (a sweep interval is 250 ms).
      expect(flushedAt[10]!.realMs - flushedAt[9]!.realMs).toBeLessThan(100);
    } finally {
      now.mockRestore();
    }
  });
});
