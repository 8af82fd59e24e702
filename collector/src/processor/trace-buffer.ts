/**
 * Holds traces until their cost can be judged: until a root (a SERVER span, a job root, a CONSUMER
 * span, or a span without a parent) has arrived and a grace period has passed for the children
 * still in flight, and never longer than a maximum wait from the trace's first span. Bounded: at
 * most `maxTraces` traces (a new one flushes the oldest) and `maxSpansPerTrace` spans per trace (a
 * full trace is flushed at once). Only spans that may be roots (mayBeRoot) are held whole, to be
 * written on: every other span is handed on as soon as it arrives (onForward), and its record
 * (record-store.ts) is what the trace keeps of it. A flushed trace is handed on with its records:
 * nothing is dropped here.
 */
import { performance } from 'node:perf_hooks';
import type { CollectedSpan } from '../otlp/otlp-model';
import { AgeQueue } from './age-queue';
import { DeadlineQueue } from './deadline-queue';
import { HeldSpans } from './held-spans';
import { mayBeRoot } from './root-attribution';
import { SpanCostReader, type SpanFacts } from './span-facts';
import { NO_RECORD, RecordStore } from './record-store';
import { RecentTraceIds } from './recent-trace-ids';

/**
 * A held trace beside its spans: its object, Map entry, queue entries and trace id string, its
 * HeldSpans with their slot array (the spans are charged by HeldSpans, the records by the
 * RecordStore). With its spans and records, 3–20 % above what V8 and the ArrayBuffers give back
 * when the trace is let go, for traces of 1, 2, 7 and 4,000 spans: a SERVER root, the rest CLIENT
 * spans beneath it (decode-budget.test.ts).
 */
export const TRACE_BYTES = 400;

// The longest stretch of judging in one turn of the event loop during a sweep. SHORT_SLICE_MS: a
// request waits about that long for the sweep at each turn (ingest p99 at half the benchmark's
// rate: 17.5 ms with 5 ms slices, 4.4–5.2 ms with 1 ms). LONG_SLICE_MS while a trace is overdue by
// more than two sweep intervals (a sweep starts with traces up to one interval overdue) or more
// than half of --max-traces is held: the sweep is falling behind the traffic, and held traces
// would pile up to --max-traces and be judged before their time (1 ms slices throughout: 107,000
// traces of 280,000 judged early at the benchmark's full rate).
const SHORT_SLICE_MS = 1;
const LONG_SLICE_MS = 5;

/**
 * The window's clock, in whole milliseconds: monotonic (the queues are in deadline order, which a
 * wall clock stepped back would break), and whole so that the times a held trace keeps are small
 * integers stored in place, not a number object each for the garbage collector (for 24 days of
 * uptime; beyond, they are still right).
 */
const clockMs = (): number => Math.floor(performance.now());

/** Why a trace left the buffer. */
export type FlushReason = 'root_grace' | 'max_wait' | 'traces_full' | 'trace_full' | 'shutdown';

export interface TraceBufferOptions {
  /** Wait after a root arrives. */
  readonly graceMs: number;
  /** Longest wait from a trace's first span. */
  readonly maxWaitMs: number;
  readonly maxTraces: number;
  readonly maxSpansPerTrace: number;
  /**
   * How many times each span's bytes are copied (CollectedSpan.bytesCopied: once by each
   * downstream): a request's buffer is let go once every span in it is copied that many times. 0
   * (the default): once its spans are garbage.
   */
  readonly copiesPerSpan?: number;
  /**
   * Receives each flushed trace: the spans held whole, and the facts of those forwarded already. Must not throw (errors are caught and reported).
   */
  readonly onFlush: (spans: CollectedSpan[], reason: FlushReason, forwarded: SpanFacts[]) => void;
  /**
   * Receives the spans of a request that cannot be roots, as soon as they arrive (their records
   * kept); must not throw. Their leases hold `copiesPerSpan` for them.
   */
  readonly onForward: (spans: CollectedSpan[]) => void;
  /** Reads the records' costs (TraceProcessor.costs, to share its caches). */
  readonly costs?: SpanCostReader;
  /** Receives errors thrown by onFlush or onForward, or reading a record, with what was being done. */
  readonly onError: (error: unknown, during: string) => void;
  /** Late spans: spans of a trace flushed recently (they start a new window). */
  readonly onLateSpans?: (count: number) => void;
}

interface PendingTrace {
  readonly traceId: string;
  /** In the Map still: queue entries of a flushed trace are skipped by this, without a lookup. */
  held: boolean;
  /** Made into spans and handed on (and let go here) when flushed. */
  spans: HeldSpans | undefined;
  /** The records of its spans forwarded already: where they start and end in the store (NO_RECORD: none), how many. */
  recordHead: number;
  recordTail: number;
  recordCount: number;
  readonly firstAtMs: number;
  deadlineMs: number;
  /** When its bytes are next looked at to be moved out of its requests' buffers (0: not queued for it). */
  moveAtMs: number;
}

/** Least wait before a trace's bytes are moved out of their requests' buffers (a short grace period would move every trace). */
const MIN_MOVE_AFTER_MS = 1000;

export class TraceBuffer {
  private readonly options: TraceBufferOptions;
  private readonly traces = new Map<string, PendingTrace>();
  // The traces by age (to flush the oldest, and those past the maximum wait) and by the deadline
  // their root set (deadlines only grow: the earliest is first), so that a sweep visits only the
  // traces due, not all held. Flushed traces are skipped as they come up (a flushed trace lets
  // its spans go); the age queue is rebuilt once they are most of it.
  private readonly byAge = new AgeQueue<PendingTrace>();
  // Each trace with the deadline a root set (a later root sets a later one, queued anew).
  private readonly byGrace = new DeadlineQueue<PendingTrace>();
  // When to look at a trace's bytes to move them out of their requests' buffers: twice the grace
  // period (at least a second) after a root came to a trace that had one already, and as long
  // after each look while it is held. A trace is judged a grace period after its root otherwise:
  // only traces whose roots keep coming are queued (a queue of every trace would keep each one
  // twice as long).
  private readonly toMove = new AgeQueue<PendingTrace>();
  private readonly moveAfterMs: number;
  // Trace ids flushed lately, to count late spans: the last maxTraces flushes.
  private readonly recentlyFlushed: RecentTraceIds;
  private readonly sweepIntervalMs: number;
  // A sweep is under way (sliced).
  private sweeping = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private spans = 0;
  private readonly records = new RecordStore();
  private bytes = 0;
  private readonly copies: number;
  private readonly costs: SpanCostReader;

  constructor(options: TraceBufferOptions) {
    this.options = options;
    this.costs = options.costs ?? new SpanCostReader();
    this.moveAfterMs = Math.max(MIN_MOVE_AFTER_MS, 2 * options.graceMs);
    this.copies = options.copiesPerSpan ?? 0;
    this.recentlyFlushed = new RecentTraceIds(options.maxTraces);
    this.sweepIntervalMs = Math.min(250, Math.max(10, Math.floor(options.graceMs / 4)));
  }

  /** Traces held now. */
  get traceCount(): number {
    return this.traces.size;
  }

  /** Spans held whole now (to be written on and forwarded when their trace is judged). */
  get spanCount(): number {
    return this.spans;
  }

  /** Records held now: of spans forwarded already, for their trace's judgement. */
  get recordCount(): number {
    return this.records.count;
  }

  /** Estimated bytes of the traces held now (TRACE_BYTES each, what HeldSpans charges for their spans, the record store). */
  get byteCount(): number {
    return this.bytes + this.records.bytes;
  }

  add(spans: readonly CollectedSpan[]): void {
    const now = clockMs();
    // Every span is held for each copy before any is forwarded or flushed: a downstream may copy
    // one, and release it, before the rest of the request is in.
    if (this.copies > 0) for (const span of spans) span.lease?.hold(this.copies);
    let late = 0;
    const forward: CollectedSpan[] = [];
    // Spans of one trace come one after another: the trace is looked up once for the run.
    let trace: PendingTrace | undefined;
    let traceIsLate = false;
    for (const span of spans) {
      if (trace === undefined || trace.traceId !== span.traceId) {
        trace = this.traces.get(span.traceId);
        if (trace === undefined) {
          if (this.traces.size >= this.options.maxTraces) this.flushOldest('traces_full');
          trace = {
            traceId: span.traceId,
            held: true,
            spans: new HeldSpans(),
            recordHead: NO_RECORD,
            recordTail: NO_RECORD,
            recordCount: 0,
            firstAtMs: now,
            deadlineMs: now + this.options.maxWaitMs,
            moveAtMs: 0,
          };
          this.traces.set(span.traceId, trace);
          this.byAge.push(trace);
          this.bytes += TRACE_BYTES;
        }
        traceIsLate = this.recentlyFlushed.has(span.traceId);
      }
      if (traceIsLate) late += 1;
      const held = trace.spans!;
      if (mayBeRoot(span)) {
        const before = held.heldBytes;
        held.add(span, this.copies);
        this.spans += 1;
        this.bytes += held.heldBytes - before;
      } else {
        // Forwarded whatever happens to its record: a span that cannot be recorded is judged without.
        forward.push(span);
        try {
          trace.recordTail = this.records.add(span, this.costs, trace.recordTail);
          if (trace.recordHead === NO_RECORD) trace.recordHead = trace.recordTail;
          trace.recordCount += 1;
        } catch (error) {
          this.options.onError(error, 'reading the record of a span forwarded as it came (it was forwarded; its trace is judged without it)');
        }
      }
      if (isRootCandidate(span)) this.rootArrived(trace, now);
      if (held.count + trace.recordCount >= this.options.maxSpansPerTrace) {
        this.flush(trace, 'trace_full');
        trace = undefined;
      }
    }
    if (late > 0) this.options.onLateSpans?.(late);
    if (forward.length > 0) this.forward(forward);
    if (this.traces.size > 0) this.timer ??= setInterval(() => this.sweep(), this.sweepIntervalMs).unref();
  }

  /** Flushes every trace held (shutdown). */
  flushAll(reason: FlushReason = 'shutdown'): void {
    for (const trace of [...this.traces.values()]) this.flush(trace, reason);
    this.byAge.reset([]);
    this.byGrace.clear();
    this.toMove.reset([]);
    this.stopTimer();
  }

  /** Stops the sweep timer (spans held stay until flushAll). */
  close(): void {
    this.closed = true;
    this.stopTimer();
  }

  /** A root candidate came: the trace is due a grace period from now (or at its maximum wait, if sooner). */
  private rootArrived(trace: PendingTrace, now: number): void {
    const graceEnd = now + this.options.graceMs;
    const maxWaitEnd = trace.firstAtMs + this.options.maxWaitMs;
    if (graceEnd >= maxWaitEnd) {
      trace.deadlineMs = maxWaitEnd; // the age queue takes it then
      return;
    }
    if (trace.deadlineMs === graceEnd) return; // another root in the same turn
    // A root came before (it set the deadline): the roots keep coming, and may for long.
    const rootCameBefore = trace.deadlineMs !== trace.firstAtMs + this.options.maxWaitMs;
    trace.deadlineMs = graceEnd;
    this.byGrace.push(trace, graceEnd);
    if (rootCameBefore && trace.moveAtMs === 0) {
      trace.moveAtMs = now + this.moveAfterMs;
      this.toMove.push(trace);
    }
  }

  /**
   * Flushes the traces that are due, in slices (SHORT_SLICE_MS, LONG_SLICE_MS) with the event loop
   * free in between: a sweep can have thousands of traces to judge, and requests must not wait
   * for all of them.
   */
  private sweep(): void {
    if (this.sweeping) return; // the last one is still under way
    this.sweeping = true;
    this.continueSweep(clockMs());
  }

  private continueSweep(now: number): void {
    if (this.closed) {
      this.sweeping = false;
      return;
    }
    const behind = this.overdueMs(now) > 2 * this.sweepIntervalMs || this.traces.size > this.options.maxTraces / 2;
    const sliceEnd = performance.now() + (behind ? LONG_SLICE_MS : SHORT_SLICE_MS);
    this.moveLongHeld(now, sliceEnd);
    for (let trace = this.takeDue(now); trace !== undefined; trace = this.takeDue(now)) {
      // Its root set a deadline before the maximum wait: closed by the grace period, however late the sweep.
      this.flush(trace, trace.deadlineMs < trace.firstAtMs + this.options.maxWaitMs ? 'root_grace' : 'max_wait');
      if (performance.now() >= sliceEnd) {
        this.compactAgeQueue();
        // Traces that came due meanwhile are taken in this sweep too: under load a sweep spans many
        // turns of the event loop, and a trace waiting for the next one would be held that much longer.
        setImmediate(() => this.continueSweep(clockMs()));
        return;
      }
    }
    this.sweeping = false;
    this.compactAgeQueue();
    if (this.traces.size === 0) this.stopTimer();
  }

  /**
   * Flushed traces are most of the age queue (one held long keeps those behind it there): it starts
   * over from the Map, whose insertion order is age order. Also between slices: under load a sweep
   * may not end.
   */
  private compactAgeQueue(): void {
    if (this.byAge.size > 2 * this.traces.size + 1024) this.byAge.reset([...this.traces.values()]);
  }

  /**
   * Moves the bytes of the traces held past moveAfterMs at `now` out of their requests' buffers;
   * looked at again after as long (spans that came since are moved then). Stops at `sliceEnd`: the
   * rest waits for the next sweep.
   */
  private moveLongHeld(now: number, sliceEnd: number): void {
    for (let trace = this.toMove.peek(); trace !== undefined && trace.moveAtMs <= now; trace = this.toMove.peek()) {
      if (performance.now() >= sliceEnd) return;
      this.toMove.shift();
      const held = trace.spans;
      if (!trace.held || held === undefined) continue;
      trace.moveAtMs = now + this.moveAfterMs;
      this.toMove.push(trace);
      // Held this long, its roots keep coming (each moves its deadline on): a trace is judged a
      // grace period after its root otherwise.
      const before = held.heldBytes;
      held.moveBytes(this.copies);
      this.bytes += held.heldBytes - before;
    }
  }

  /** How long past its deadline the trace due first has waited at `now` (0 when none is due). */
  private overdueMs(now: number): number {
    const graced = this.byGrace.peekItem();
    const deadlineMs = this.byGrace.peekDeadline();
    const oldest = this.byAge.peek();
    // An entry left behind (its trace flushed, or its deadline moved on) is not waiting.
    const byGrace = graced !== undefined && graced.held && graced.deadlineMs === deadlineMs ? now - deadlineMs : 0;
    const byAge = oldest !== undefined && oldest.held ? now - (oldest.firstAtMs + this.options.maxWaitMs) : 0;
    return Math.max(0, byGrace, byAge);
  }

  /** A held trace due at `now` (its grace period over, or its maximum wait), taken off its queue; undefined when none is. */
  private takeDue(now: number): PendingTrace | undefined {
    while (this.byGrace.peekDeadline() <= now) {
      const trace = this.byGrace.peekItem()!;
      this.byGrace.shift();
      // Still held, and no later root has moved its deadline on.
      if (trace.held && trace.deadlineMs <= now) return trace;
    }
    for (let trace = this.byAge.peek(); trace !== undefined; trace = this.byAge.peek()) {
      if (trace.held && trace.firstAtMs + this.options.maxWaitMs > now) return undefined;
      this.byAge.shift();
      if (trace.held) return trace;
    }
    return undefined;
  }

  private forward(spans: CollectedSpan[]): void {
    try {
      this.options.onForward(spans);
    } catch (error) {
      this.options.onError(error, 'forwarding the spans that cannot be roots');
    }
  }

  private flushOldest(reason: FlushReason): void {
    for (let oldest = this.byAge.shift(); oldest !== undefined; oldest = this.byAge.shift()) {
      if (oldest.held) {
        this.flush(oldest, reason);
        return;
      }
    }
  }

  private flush(trace: PendingTrace, reason: FlushReason): void {
    if (!trace.held) return;
    trace.held = false;
    this.traces.delete(trace.traceId);
    const held = trace.spans!;
    // Queue entries may outlive the trace here: they must not keep its spans.
    trace.spans = undefined;
    this.spans -= held.count;
    this.bytes -= TRACE_BYTES + held.heldBytes;
    const spans = held.spans(trace.traceId);
    const forwarded = this.records.take(trace.recordHead);
    trace.recordHead = trace.recordTail = NO_RECORD;
    this.recentlyFlushed.add(trace.traceId);
    try {
      this.options.onFlush(spans, reason, forwarded);
    } catch (error) {
      this.options.onError(error, 'processing a flushed trace');
    }
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** A span after which little of its trace is still to come from its process. */
function isRootCandidate(span: CollectedSpan): boolean {
  return mayBeRoot(span) || !span.hasParent;
}
