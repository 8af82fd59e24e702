/**
 * How far the collector's old generation may grow past what was live after the last full
 * collection. V8 picks a factor of up to 4 while little time goes to collecting: for the collector,
 * whose live heap is 30–45 MiB at the benchmark's load, the old generation then reached 120–180 MiB
 * between full collections (RSS 330–350 MiB). At 100 % (twice what was live), with 2 marking
 * threads (marking-threads.ts), RSS at 100,000 spans/s was 258–282 MiB; at
 * OLD_GENERATION_GROWTH_PERCENT, 242–253 MiB, for 2–9 % less throughput (docs/performance.md). A V8
 * flag, read at each full collection: set for the whole process before the collector starts, unless
 * Node was started with one of the user's own.
 */
import v8 from 'node:v8';

/** The old generation grows to (1 + this / 100) × what was live after a full collection. */
export const OLD_GENERATION_GROWTH_PERCENT = 70;

const GROWTH_FLAG = /^--heap[-_]growing[-_]percent\b/;

/** The heap-growth flag Node was started with, if any (V8 flags are not allowed in NODE_OPTIONS). */
export function ownHeapGrowthFlag(execArgv: readonly string[]): string | undefined {
  return execArgv.find((flag) => GROWTH_FLAG.test(flag));
}

/** Sets the growth of the old generation, unless Node was started with a flag for it. */
export function limitOldGenerationGrowth(execArgv: readonly string[]): void {
  if (ownHeapGrowthFlag(execArgv) !== undefined) return;
  v8.setFlagsFromString(`--heap-growing-percent=${OLD_GENERATION_GROWTH_PERCENT}`);
}
