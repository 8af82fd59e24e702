/**
 * Running totals of garbage collections, from `perf_hooks` GC entries. A request reads the
 * totals at its start and end and reports the difference.
 *
 * GC entries are delivered to observers asynchronously (after the collection, on a later tick),
 * so a collection that finishes in the last moments of a request may be counted for the next
 * one. That lag is a few milliseconds, far below the requests whose GC cost matters.
 */
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';

export class GcMonitor {
  count = 0;
  timeMs = 0;
  private observer: PerformanceObserver | undefined;

  start(): void {
    if (this.observer !== undefined) return;
    this.observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries() as PerformanceEntry[]) {
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
