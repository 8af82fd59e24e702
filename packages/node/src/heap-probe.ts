/**
 * Reads the V8 heap in use. `v8.getHeapStatistics()` walks every heap space: a few hundred
 * nanoseconds on a small heap, several microseconds on a busy app's. A request that runs alone
 * gets a fresh reading at its start and end; while several run at once (their deltas are
 * low-confidence anyway) a reading younger than `maxAgeMs` is shared.
 */
import { getHeapStatistics } from 'node:v8';

export class HeapProbe {
  private lastBytes = 0;
  private lastAtMs = -Infinity;

  /** @param maxAgeMs how old a shared reading may be under concurrency (default 1 ms) */
  constructor(private readonly maxAgeMs = 1) {}

  /** Heap used now; `shared` allows a recent reading instead of a fresh one. */
  usedBytes(shared: boolean): number {
    const now = performance.now();
    if (!shared || now - this.lastAtMs > this.maxAgeMs) {
      this.lastBytes = getHeapStatistics().used_heap_size;
      this.lastAtMs = now;
    }
    return this.lastBytes;
  }
}
