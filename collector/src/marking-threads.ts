/**
 * How many threads V8 may mark the old generation with, beside the collector's own. V8 runs up to
 * 7 of them (4 with Node's thread pool) whatever cores the process may use. Pinned to one core
 * (taskset, a one-CPU cpuset), they take turns with the collector's thread: at each full
 * collection it lost the core for 15–25 ms (the "biggest step" of --trace-gc), every request that
 * came meanwhile waited, and that set ingest p99. With 2 marking threads, p99 at half the
 * benchmark's rate had a median of 8.0 ms against 12.0 ms with V8's 7 (10 and 21 runs), and
 * 13.1–14.5 against 14.7–17.8 ms once the old generation grew less (old-generation.ts); RSS at
 * 100,000 spans/s was about 6 MiB higher. With 1, p99 had a median of 6.9 ms but RSS was 10–20 MiB
 * higher: marking then ends later, and the heap grows meanwhile (docs/performance.md).
 *
 * A V8 flag, read when a heap is made: the CLI sets it before it makes the collector's worker
 * thread, unless Node was started with one of the user's own.
 */
import os from 'node:os';
import v8 from 'node:v8';

const MARKING_FLAG = /^--concurrent[-_]marking[-_]max[-_]worker[-_]num\b/;

/** The fewest marking threads set: one fewer would cost more memory than the latency it saves (above). */
export const MIN_MARKING_THREADS = 2;
/** V8's own default: the most set, so that the flag only ever lowers it. */
export const MAX_MARKING_THREADS = 7;

/**
 * One marking thread per core the process may run on, less the collector's own: MIN_MARKING_THREADS
 * at least, MAX_MARKING_THREADS at most.
 */
export function markingThreadsFor(cores: number): number {
  return Math.min(MAX_MARKING_THREADS, Math.max(MIN_MARKING_THREADS, Math.floor(cores) - 1));
}

/** The marking-threads flag Node was started with, if any (V8 flags are not allowed in NODE_OPTIONS). */
export function ownMarkingThreadsFlag(execArgv: readonly string[]): string | undefined {
  return execArgv.find((flag) => MARKING_FLAG.test(flag));
}

/**
 * Limits V8's marking threads for heaps made from now on, to suit the cores this process may run
 * on (os.availableParallelism follows its CPU affinity), unless Node was started with a flag for
 * it. Returns the number set, or undefined when left to the user's flag.
 */
export function limitMarkingThreads(execArgv: readonly string[], cores: number = os.availableParallelism()): number | undefined {
  if (ownMarkingThreadsFlag(execArgv) !== undefined) return undefined;
  const threads = markingThreadsFor(cores);
  v8.setFlagsFromString(`--concurrent-marking-max-worker-num=${threads}`);
  return threads;
}
