/**
 * What each garbage collection freed, and when it ran. `perf_hooks` GC entries carry the time but
 * no sizes; `v8.GCProfiler` carries the heap before and after each collection but no time, and
 * hands its records over only when stopped. Both see the same collections in the same order, so
 * the profiler is handed over to a fresh one whenever entries arrive and its records are paired
 * with the entries in order.
 */
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { GCProfiler } from 'node:v8';

/** One collection: when it started (performance.now() time) and the V8 heap bytes it freed. */
export interface FreedBytes {
  readonly atMs: number;
  readonly bytes: number;
  /** Heap in use just after the collection. */
  readonly usedAfter: number;
}

interface HeapFigures {
  readonly usedHeapSize?: number;
}

interface ProfilerRecord {
  readonly gcType?: string;
  /** Microseconds the collection took. */
  readonly cost?: number;
  readonly beforeGC?: { readonly heapStatistics?: HeapFigures };
  readonly afterGC?: { readonly heapStatistics?: HeapFigures };
}

interface Entry {
  readonly atMs: number;
  readonly gcType: string | undefined;
}

/** The profiler's name for each `perf_hooks` GC kind (`entry.detail.kind`). */
const GC_TYPE_OF_KIND: Readonly<Record<number, string>> = {
  1: 'Scavenge',
  2: 'MinorMarkSweep',
  4: 'MarkSweepCompact',
  8: 'IncrementalMarking',
  16: 'ProcessWeakCallbacks',
};

/** Entries or records kept waiting for their counterpart, at most. */
const MAX_WAITING = 1024;
/** Records of the last hand-over kept, to drop a collection both profilers saw. */
const OVERLAP_KEPT = 4;

export class GcFreedBytes {
  private observer: PerformanceObserver | undefined;
  private profiler: GCProfiler | undefined;
  private entries: Entry[] = [];
  private records: ProfilerRecord[] = [];
  private lastRecords: readonly ProfilerRecord[] = [];
  private startedAtMs = 0;
  /** Collections whose entry and record could not be paired (the two streams fell out of step). */
  unpaired = 0;

  constructor(private readonly onFreed: (freed: FreedBytes) => void) {}

  start(): void {
    if (this.observer !== undefined) return;
    // Entries of collections that ran before the profiler have no record: they are left out.
    this.startedAtMs = performance.now();
    this.lastRecords = [];
    this.profiler = new GCProfiler();
    this.profiler.start();
    this.observer = new PerformanceObserver((list) => this.onEntries(list.getEntries()));
    this.observer.observe({ type: 'gc' });
  }

  stop(): void {
    this.observer?.disconnect();
    this.observer = undefined;
    this.profiler?.stop();
    this.profiler = undefined;
    this.entries = [];
    this.records = [];
    this.lastRecords = [];
  }

  private onEntries(entries: readonly PerformanceEntry[]): void {
    for (const entry of entries) {
      if (entry.startTime < this.startedAtMs) continue;
      const kind = ((entry as { detail?: unknown }).detail as { kind?: number } | undefined)?.kind;
      this.entries.push({ atMs: entry.startTime, gcType: kind === undefined ? undefined : GC_TYPE_OF_KIND[kind] });
    }
    const profiler = this.profiler;
    if (profiler === undefined) return;
    // The next profiler starts before this one stops: stopping allocates (the records are parsed
    // from JSON), and a collection in a gap would have an entry and no record, every later pair
    // one collection off. One in the overlap is in both, and dropped from the next hand-over.
    const next = new GCProfiler();
    next.start();
    const records = (profiler.stop()?.statistics ?? []) as readonly ProfilerRecord[];
    this.profiler = next;
    let first = 0;
    while (first < records.length && this.lastRecords.some((seen) => sameCollection(seen, records[first]))) first++;
    for (let index = first; index < records.length; index++) this.records.push(records[index]);
    if (records.length > first) this.lastRecords = records.slice(-OVERLAP_KEPT);
    this.pair();
  }

  /**
   * Both streams list the same collections in the same order, but a record can be taken before
   * its entry is delivered: each pairs with the oldest waiting counterpart. Kinds that disagree
   * mean the streams fell out of step: everything waiting is dropped, and pairing starts afresh.
   */
  private pair(): void {
    const paired = Math.min(this.entries.length, this.records.length);
    for (let index = 0; index < paired; index++) {
      const entry = this.entries[index];
      const record = this.records[index];
      if (entry.gcType !== undefined && record.gcType !== undefined && entry.gcType !== record.gcType) {
        this.unpaired += Math.max(this.entries.length, this.records.length) - index;
        this.entries = [];
        this.records = [];
        return;
      }
      const before = record.beforeGC?.heapStatistics?.usedHeapSize;
      const after = record.afterGC?.heapStatistics?.usedHeapSize;
      if (typeof before === 'number' && typeof after === 'number' && before > after)
        this.onFreed({ atMs: entry.atMs, bytes: before - after, usedAfter: after });
    }
    this.entries = this.entries.slice(paired);
    this.records = this.records.slice(paired);
    if (this.entries.length > MAX_WAITING || this.records.length > MAX_WAITING) {
      this.unpaired += Math.max(this.entries.length, this.records.length);
      this.entries = [];
      this.records = [];
    }
  }
}

/** Two records of the same collection: a different one has the same duration and heap figures only by chance. */
function sameCollection(a: ProfilerRecord, b: ProfilerRecord): boolean {
  return (
    a.gcType === b.gcType &&
    a.cost === b.cost &&
    a.beforeGC?.heapStatistics?.usedHeapSize === b.beforeGC?.heapStatistics?.usedHeapSize &&
    a.afterGC?.heapStatistics?.usedHeapSize === b.afterGC?.heapStatistics?.usedHeapSize
  );
}
