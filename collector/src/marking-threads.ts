/**
 * How many threads V8 may mark the old generation with, beside the collector's own. V8 allows up
 * to 7 (4 at once with Node's default thread pool), whatever cores the process may use. Pinned to
 * one core (taskset, a one-CPU cpuset), they take turns with the collector's thread: at each full
 * collection it lost the core for 10–25 ms (the "biggest step" of --trace-gc), every request that
 * came meanwhile waited, and that set ingest p99. With the old generation growing to twice what
 * was live, 2 marking threads gave a p99 at half the benchmark's rate with a median of 8.0 ms
 * against 12.0 ms with V8's default (10 and 21 runs), RSS at 100,000 spans/s about 6 MiB higher;
 * 1 gave a median of 6.9 ms but RSS 10–20 MiB higher (marking then ends later, and the heap grows
 * meanwhile). With the growth lowered to win that memory back (old-generation.ts), 2 against the
 * default gave 13.1–14.5 against 14.7–17.8 ms (docs/performance.md).
 *
 * A V8 flag, read when a heap is made: the CLI sets it before it makes the collector's worker
 * thread, unless Node was started with one of the user's own. A collector run on the main thread
 * (given a young-generation flag of the user's own) has its heap already: the flag does not reach
 * it.
 */
import os from 'node:os';
import v8 from 'node:v8';

const MARKING_FLAG = /^--concurrent[-_]marking[-_]max[-_]worker[-_]num\b/;

/** The fewest marking threads set: with one fewer, RSS rose more than p99 fell (above). */
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

/**
 * The marking-threads flag Node was started with, if any (V8 flags are not allowed in NODE_OPTIONS).
 */
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
