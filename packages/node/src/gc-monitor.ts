/**
 * Running totals of garbage collections, from `perf_hooks` GC entries. A request reads the
 * totals at its start and end and reports the difference.
 *
 * GC entries are delivered to observers asynchronously (after the collection, on a later tick),
 * so a collection in the last moments of a request may be counted for the next one. Deciding
 * whether the heap delta is trustworthy cannot wait for that, so a weakly held canary object
 * gives a synchronous answer too: a full collection clears it.
 */
import { PerformanceObserver } from 'node:perf_hooks';

export class GcMonitor {
  count = 0;
  timeMs = 0;
  private observer: PerformanceObserver | undefined;
  private canary = new WeakRef<object>({});
  private canariesCollected = 0;

  /**
   * Full collections seen so far, known synchronously: the canary is gone only after one.
   * Scavenges of the young generation do not clear it; they show in {@link count} instead.
   */
  fullCollectionsSeen(): number {
    if (this.canary.deref() === undefined) {
      this.canariesCollected += 1;
      this.canary = new WeakRef({});
    }
    return this.canariesCollected;
  }

  start(): void {
    if (this.observer !== undefined) return;
    this.observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        this.count += 1;
        this.timeMs += entry.duration;
      }
    });
    this.observer.observe({ type: 'gc' });
  }

  stop(): void {
    this.observer?.disconnect();
    this.observer = undefined;
  }
}
