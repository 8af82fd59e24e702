/**
 * The trace window: a trace is held until its root has arrived plus the grace period (at most the
 * maximum wait from its first span), bounded in traces and spans per trace, and a full buffer
 * hands on its oldest trace as it is — never drops it. Only the spans that may be roots are held
 * whole; the others are forwarded as they arrive, their records kept for the trace's judgement.
 */
import { BudgetRuleSet, loadBudgetFile } from '@request-budget/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeTraceRequest } from '../src/exporter/otlp-encode';
import type { CollectedSpan } from '../src/otlp/otlp-model';
import { HELD_SPAN_BYTES } from '../src/processor/held-spans';
import { INTERNED_STRING_BYTES } from '../src/processor/interned-strings';
import { CHUNK_SLOTS, RECORD_SLOT_BYTES } from '../src/processor/record-store';
import { factsOfSpan, idKeyOfHex, SpanCostReader, type SpanFacts } from '../src/processor/span-facts';
import { TRACE_BYTES, TraceBuffer, type FlushReason } from '../src/processor/trace-buffer';
import { TraceProcessor } from '../src/processor/trace-processor';
import { SPAN_BYTES } from '../src/otlp/received-span';
import { decodeTraceRequest } from '../src/receiver/otlp-decode';
import { decodeProtobufRequest } from '../../test/support/otlp-decode';
import { COLLECTOR_BUDGETS } from './support/collector-process';
import { decodedSpans } from './support/decoded-spans';
import { Kind, newSpanId, newTraceId, ORDERS_ROOT_COST, ordersTrace, toOtlpProtobuf, type SyntheticSpan } from './support/synthetic-trace';

const buffers: TraceBuffer[] = [];
afterEach(() => buffers.splice(0).forEach((buffer) => buffer.close()));

/** Spans of one trace, decoded: CLIENT children (forwarded at once) unless a kind is given. */
const spansOf = (traceId: string, spans: Partial<SyntheticSpan>[]): CollectedSpan[] => decodedSpans(traceId, spans);

// The trace of each span forwarded, by its record's key: a trace flushed with no span held whole is
// known by its records.
const traceOfRecord = new Map<string, string>();
const traceIdOf = (spans: readonly CollectedSpan[], forwarded: readonly SpanFacts[]): string => spans[0]?.traceId ?? traceOfRecord.get(forwarded[0]!.spanId)!;

function bufferWith(options: Partial<ConstructorParameters<typeof TraceBuffer>[0]> = {}) {
  const flushed: { traceId: string; spans: number; records: number; reason: FlushReason; atMs: number }[] = [];
  const forwarded: CollectedSpan[][] = [];
  let late = 0;
  const buffer = new TraceBuffer({
    graceMs: 100,
    maxWaitMs: 400,
    maxTraces: 100,
    maxSpansPerTrace: 100,
    onFlush: (spans, reason, records) =>
      flushed.push({ traceId: traceIdOf(spans, records), spans: spans.length, records: records.length, reason, atMs: Date.now() }),
    onForward: (spans) => {
      forwarded.push(spans);
      for (const span of spans) traceOfRecord.set(idKeyOfHex(span.spanId), span.traceId);
    },
    onError: (error) => {
      throw error;
    },
    onLateSpans: (count) => (late += count),
    ...options,
  });
  buffers.push(buffer);
  return { buffer, flushed, forwarded, late: () => late };
}

describe('the trace window', () => {
  it('holds a trace until its root plus the grace period, children arriving meanwhile included', async () => {
    // A long maximum wait, so that only the root and the grace period can close this window.
    const { buffer, flushed, forwarded } = bufferWith({ maxWaitMs: 5000 });
    const traceId = newTraceId();
    buffer.add(spansOf(traceId, [{}, {}]));
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(flushed).toEqual([]); // no root yet: waits up to maxWait
    buffer.add(spansOf(traceId, [{ kind: Kind.SERVER }]));
    const rootAt = Date.now();
    buffer.add(spansOf(traceId, [{}]));
    // The root held whole; the three children forwarded as they came, their records held.
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([1, 1, 3]);
    expect(forwarded.map((spans) => spans.length)).toEqual([2, 1]);
    await expect.poll(() => flushed.length, { timeout: 2000 }).toBe(1);
    expect(flushed[0]).toMatchObject({ traceId, spans: 1, records: 3, reason: 'root_grace' });
    expect(flushed[0]!.atMs - rootAt).toBeGreaterThanOrEqual(95);
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([0, 0, 0]);
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
    expect(flushed[0]).toMatchObject({ traceId, spans: 2, records: 0, reason: 'root_grace' });
    expect(flushed[0]!.atMs - secondRootAt).toBeGreaterThanOrEqual(195);
  });

  it('flushes traces due by their root while one without a root waits at the front, then that one at its maximum wait', async () => {
    const { buffer, flushed } = bufferWith({ graceMs: 20, maxWaitMs: 600, maxTraces: 5000 });
    const waiting = newTraceId();
    const rooted = Array.from({ length: 1500 }, () => newTraceId());
    // Decoded beforehand: on a busy machine decoding 1500 requests could take the maximum wait.
    const requests = rooted.map((id) => spansOf(id, [{ kind: Kind.SERVER, parentSpanId: undefined }]));
    const started = Date.now();
    buffer.add(spansOf(waiting, [{}]));
    for (const request of requests) buffer.add(request);
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
    expect(flushed[0]).toMatchObject({ traceId, spans: 0, records: 1, reason: 'max_wait' });
    expect(flushed[0]!.atMs - started).toBeGreaterThanOrEqual(395);
  });

  it('when full, hands on the oldest trace as it is; a full trace is handed on at once', () => {
    const { buffer, flushed, forwarded, late } = bufferWith({ maxTraces: 2, maxSpansPerTrace: 3, graceMs: 10_000, maxWaitMs: 10_000 });
    const [a, b, c] = [newTraceId(), newTraceId(), newTraceId()];
    buffer.add(spansOf(a, [{}]));
    buffer.add(spansOf(b, [{}, {}]));
    buffer.add(spansOf(c, [{}]));
    const shape = () => flushed.map((flush) => [flush.traceId, flush.spans, flush.records, flush.reason]);
    expect(shape()).toEqual([[a, 0, 1, 'traces_full']]);
    buffer.add(spansOf(b, [{}, {}]));
    expect(shape()).toEqual([
      [a, 0, 1, 'traces_full'],
      [b, 0, 3, 'trace_full'],
    ]);
    // c, and b's fourth span in a new window: records only (children are not held whole).
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([2, 0, 2]);
    expect(late()).toBe(1);
    buffer.flushAll();
    expect(flushed.map((flush) => flush.reason).slice(2)).toEqual(['shutdown', 'shutdown']);
    expect(flushed.reduce((sum, flush) => sum + flush.spans + flush.records, 0)).toBe(6);
    // Each span forwarded once, one call per add().
    expect(forwarded.map((spans) => spans.length)).toEqual([1, 2, 1, 2]);
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
    expect(flushed[2997]).toMatchObject({ traceId: ids[2998], spans: 1, records: 1, reason: 'root_grace' });
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
      onFlush: (spans, reason, records) => flushes.push({ id: traceIdOf(spans, records), reason }),
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
      onFlush: (spans, reason, records) => {
        // Each trace takes 2 ms to judge: the 20 below would hold the event loop 40 ms in one go.
        const until = performance.now() + busyMs;
        while (performance.now() < until);
        flushed.push({ traceId: spans[0]!.traceId, spans: spans.length, records: records.length, reason, atMs: Date.now() });
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

describe('spans that cannot be roots', () => {
  const rules = new BudgetRuleSet(loadBudgetFile(COLLECTOR_BUDGETS));
  /** A window that keeps what it hands on: each onForward call, each flush with its records. */
  function windowWith(options: Partial<ConstructorParameters<typeof TraceBuffer>[0]> = {}) {
    const forwardCalls: CollectedSpan[][] = [];
    const flushes: { spans: CollectedSpan[]; reason: FlushReason; forwarded: SpanFacts[]; atMs: number }[] = [];
    let late = 0;
    const buffer = new TraceBuffer({
      graceMs: 100,
      maxWaitMs: 5000,
      maxTraces: 100,
      maxSpansPerTrace: 100,
      onFlush: (spans, reason, forwarded) => flushes.push({ spans, reason, forwarded, atMs: Date.now() }),
      onForward: (spans) => forwardCalls.push(spans),
      onError: (error) => {
        throw error;
      },
      onLateSpans: (count) => (late += count),
      ...options,
    });
    buffers.push(buffer);
    return { buffer, forwardCalls, flushes, late: () => late };
  }
  const costOf = (span: CollectedSpan) => {
    const [message] = decodeProtobufRequest(encodeTraceRequest([span]));
    return Object.fromEntries(Object.entries(message!.attributes).filter(([key]) => key.startsWith('cost.') || key.startsWith('budget.')));
  };

  it('are forwarded as they arrive, one call per add() in arrival order; only possible roots are held, and the flush brings the records their cost is derived from', async () => {
    const trace = ordersTrace();
    const body = toOtlpProtobuf(trace);
    // The same trace judged whole, as one request...
    const whole = decodeTraceRequest(body, 'protobuf').spans;
    const wholeOutcome = new TraceProcessor({ rules }).process(whole);
    // ...and through the window, in three requests.
    const processor = new TraceProcessor({ rules });
    const { buffer, forwardCalls, flushes } = windowWith({ graceMs: 30, costs: processor.costs });
    const request = decodeTraceRequest(body, 'protobuf').spans;
    // orders-py: its SERVER root, 10 CLIENT/INTERNAL spans; inventory-go: its SERVER root, a CLIENT query.
    expect(request.map((span) => span.kind)).toEqual([
      Kind.SERVER,
      Kind.CLIENT,
      Kind.CLIENT,
      Kind.CLIENT,
      Kind.CLIENT,
      Kind.CLIENT,
      Kind.CLIENT,
      Kind.INTERNAL,
      Kind.CLIENT,
      Kind.CLIENT,
      Kind.CLIENT,
      Kind.INTERNAL,
      Kind.SERVER,
      Kind.CLIENT,
    ]);
    const recordBytes = CHUNK_SLOTS * RECORD_SLOT_BYTES;
    const heldCharge = (span: CollectedSpan) => HELD_SPAN_BYTES + span.estimatedBytes - SPAN_BYTES;
    buffer.add(request.slice(0, 1));
    // A root alone: nothing to forward, no call.
    expect(forwardCalls).toEqual([]);
    // No record yet: the record store has no chunk.
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([1, 1, 0]);
    expect(buffer.byteCount).toBe(TRACE_BYTES + heldCharge(request[0]!));
    buffer.add(request.slice(1, 7));
    // Six records in the store's first chunk, and the strings they refer to, each once: their
    // process key; for a connect span nothing more; for five queries a fingerprint and a database
    // system each. Nothing more held whole.
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([1, 1, 6]);
    const strings = new Set(
      request
        .slice(1, 7)
        .map((span) => factsOfSpan(span, new SpanCostReader()))
        .flatMap(({ processKey, cost }) => [processKey, cost?.fingerprint, cost?.identity?.type === 'db' ? cost.identity.system : undefined])
        .filter((text): text is string => text !== undefined),
    );
    expect(strings.size).toBe(5);
    const stringBytes = [...strings].reduce((sum, text) => sum + INTERNED_STRING_BYTES + text.length, 0);
    expect(buffer.byteCount).toBe(TRACE_BYTES + heldCharge(request[0]!) + recordBytes + stringBytes);
    buffer.add(request.slice(7));
    // Each add() forwards its spans that cannot be roots in one call, the same objects, in the order they came.
    expect(forwardCalls.map((spans) => spans.map((span) => request.indexOf(span)))).toEqual([
      [1, 2, 3, 4, 5, 6],
      [7, 8, 9, 10, 11, 13],
    ]);
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([1, 2, 12]);
    expect(flushes).toEqual([]);

    await expect.poll(() => flushes.length, { timeout: 2000 }).toBe(1);
    const [{ spans, reason, forwarded }] = flushes as [(typeof flushes)[number]];
    expect(reason).toBe('root_grace');
    expect(spans.map((span) => span.spanId)).toEqual([trace.rootId, trace.inventoryRootId]);
    // The records: those of the forwarded spans, in the order they came, with nothing of the spans themselves.
    const children = forwardCalls.flat();
    const costs = new SpanCostReader();
    expect(forwarded).toEqual(children.map((span) => ({ ...factsOfSpan(span, costs), span: undefined })));
    expect(forwarded.filter((facts) => facts.cost?.contribution?.type === 'db')).toHaveLength(8);
    // The store keeps its one chunk, empty.
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount, buffer.byteCount]).toEqual([0, 0, 0, recordBytes]);

    // Judged from the roots held and the records, the roots get what they get judged whole.
    const outcome = processor.process(spans, forwarded);
    expect(outcome).toEqual(wholeOutcome);
    expect(outcome).toMatchObject({ roots: 2, derived: 2, judged: 2 });
    const [order, inventory] = spans as [CollectedSpan, CollectedSpan];
    const wholeOrder = whole.find((span) => span.spanId === trace.rootId)!;
    const wholeInventory = whole.find((span) => span.spanId === trace.inventoryRootId)!;
    expect(costOf(order)).toEqual(costOf(wholeOrder));
    expect(costOf(inventory)).toEqual(costOf(wholeInventory));
    expect(costOf(order)).toMatchObject({ ...ORDERS_ROOT_COST, 'budget.breached': true });
    expect(costOf(inventory)).toMatchObject({ 'cost.db.queries': 1, 'cost.db.time_ms': 0.75, 'cost.db.rows': 5, 'budget.breached': false });
    // Nothing written on the spans forwarded.
    for (const span of children) expect(costOf(span)).toEqual({});
  });

  it('of a trace flushed already are forwarded at once and counted late; a trace of children only is flushed at its maximum wait with its records', async () => {
    const { buffer, forwardCalls, flushes, late } = windowWith({ graceMs: 20, maxWaitMs: 200 });
    const traceId = newTraceId();
    const rootId = newSpanId();
    buffer.add(spansOf(traceId, [{ spanId: rootId, kind: Kind.SERVER, parentSpanId: undefined }, { parentSpanId: rootId }]));
    await expect.poll(() => flushes.length, { timeout: 2000 }).toBe(1);
    expect([flushes[0]!.reason, flushes[0]!.spans.length, flushes[0]!.forwarded.length]).toEqual(['root_grace', 1, 1]);
    expect(late()).toBe(0);

    const [child] = spansOf(traceId, [{ parentSpanId: rootId, attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT 1' } }]);
    const lateAt = Date.now();
    buffer.add([child!]);
    // Handed on in the add() itself, not held.
    expect(forwardCalls).toHaveLength(2);
    expect(forwardCalls[1]).toEqual([child]);
    expect(forwardCalls[1]![0]).toBe(child);
    expect(late()).toBe(1);
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([1, 0, 1]);

    // No root in the new window: it waits for one up to the maximum wait, then goes with no span held whole.
    await expect.poll(() => flushes.length, { timeout: 2000 }).toBe(2);
    const { spans, reason, forwarded, atMs } = flushes[1]!;
    expect(reason).toBe('max_wait');
    expect(spans).toEqual([]);
    expect(forwarded.map((facts) => [facts.spanId, facts.parentSpanId, facts.kind, facts.cost?.contribution?.type, facts.span])).toEqual([
      [idKeyOfHex(child!.spanId), idKeyOfHex(rootId), Kind.CLIENT, 'db', undefined],
    ]);
    expect(atMs - lateAt).toBeGreaterThanOrEqual(195);
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([0, 0, 0]);
    // No root to judge; the child is not forwarded again.
    expect(new TraceProcessor({ rules }).process(spans, forwarded)).toEqual({ roots: 0, derived: 0, judged: 0, breaches: [] });
    expect(forwardCalls.flat()).toHaveLength(2);
  });

  it('count with the spans held whole against --max-spans-per-trace', () => {
    const { buffer, forwardCalls, flushes, late } = windowWith({ maxSpansPerTrace: 4, graceMs: 10_000, maxWaitMs: 10_000 });
    const summary = () => flushes.map((flush) => [flush.spans[0]?.traceId, flush.reason, flush.spans.length, flush.forwarded.length]);
    // One span held and three records fill it: the third record closes the window.
    const a = newTraceId();
    buffer.add(spansOf(a, [{ kind: Kind.SERVER }, {}]));
    buffer.add(spansOf(a, [{}]));
    expect([buffer.spanCount, buffer.recordCount]).toEqual([1, 2]);
    expect(flushes).toEqual([]);
    buffer.add(spansOf(a, [{}, {}]));
    expect(summary()).toEqual([[a, 'trace_full', 1, 3]]);
    // The fifth span is in a new window, late.
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([1, 0, 1]);
    expect(late()).toBe(1);
    expect(forwardCalls.map((spans) => spans.length)).toEqual([1, 1, 2]);

    // Three held and one record fill it too: the last possible root closes the window.
    const b = newTraceId();
    buffer.add(spansOf(b, [{ kind: Kind.CONSUMER }, {}, { kind: Kind.CONSUMER }]));
    expect([buffer.spanCount, buffer.recordCount]).toEqual([2, 2]);
    expect(flushes).toHaveLength(1);
    buffer.add(spansOf(b, [{ kind: Kind.INTERNAL, attributes: { 'request_budget.root': true } }]));
    expect(summary()).toEqual([
      [a, 'trace_full', 1, 3],
      [b, 'trace_full', 3, 1],
    ]);
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([1, 0, 1]);
    expect(late()).toBe(1);
  });

  it("have their request's buffer let go once every downstream copied them, while the request's roots are still held", () => {
    const { buffer, forwardCalls, flushes } = windowWith({ copiesPerSpan: 2, graceMs: 10_000, maxWaitMs: 10_000 });
    const traceId = newTraceId();
    const rootId = newSpanId();
    const request = spansOf(traceId, [
      { spanId: rootId, name: 'GET /orders', kind: Kind.SERVER, parentSpanId: undefined, attributes: { 'http.route': '/orders' } },
      { parentSpanId: rootId, attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT 1' } },
      { parentSpanId: rootId, kind: Kind.INTERNAL },
    ]);
    const [root, ...children] = request as [CollectedSpan, CollectedSpan, CollectedSpan];
    // One request, two buffers: the possible roots', the others'.
    expect(root.lease).toBeDefined();
    expect(children[0]!.lease).toBe(children[1]!.lease);
    expect(root.lease).not.toBe(children[0]!.lease);
    expect(root.raw.buffer).not.toBe(children[0]!.raw.buffer);
    const rootBytes = Buffer.from(root.raw).toString('hex');
    const childLengths = children.map((span) => span.raw.length);
    const childBuffer = children[0]!.raw.buffer;
    // Read now: a span's ids are read from its bytes.
    const childKeys = children.map((span) => idKeyOfHex(span.spanId));
    expect(childBuffer.byteLength).toBe(childLengths[0]! + childLengths[1]!);

    buffer.add(request);
    expect(forwardCalls.map((spans) => spans.map((span) => request.indexOf(span)))).toEqual([[1, 2]]);
    // The first downstream copies them: the second still reads them whole.
    for (const span of children) span.bytesCopied();
    expect(children.map((span) => span.raw.length)).toEqual(childLengths);
    expect(childBuffer.byteLength).toBe(childLengths[0]! + childLengths[1]!);
    // The second copies one, then the other: the buffer goes with the last copy.
    children[0]!.bytesCopied();
    expect(children.map((span) => span.raw.length)).toEqual(childLengths);
    children[1]!.bytesCopied();
    expect(children.map((span) => span.raw.length)).toEqual([0, 0]);
    expect(childBuffer.byteLength).toBe(0);
    expect(children.every((span) => span.raw.buffer.byteLength === 0)).toBe(true);
    // The root, still held, has its bytes where they were.
    expect([buffer.traceCount, buffer.spanCount, buffer.recordCount]).toEqual([1, 1, 2]);
    expect(Buffer.from(root.raw).toString('hex')).toBe(rootBytes);
    expect(root.raw.buffer.byteLength).toBe(root.raw.length);

    // Judged at its flush from the records: the children's bytes are not needed.
    buffer.flushAll();
    const [{ spans, forwarded }] = flushes as [(typeof flushes)[number]];
    expect(spans).toHaveLength(1);
    expect(Buffer.from(spans[0]!.raw).toString('hex')).toBe(rootBytes);
    expect(spans[0]!.lease).toBe(root.lease);
    expect(forwarded.map((facts) => facts.spanId)).toEqual(childKeys);
    new TraceProcessor().process(spans, forwarded);
    expect(costOf(spans[0]!)).toMatchObject({ 'cost.db.queries': 1, 'cost.db.time_ms': 0.01, 'cost.http_client.calls': 0 });
  });
});
