/**
 * The collector's young generation. Node 24 lets it grow to 128 MiB (two 64 MiB semi-spaces) on
 * a machine of a few GiB; under the benchmark's load that is about 100 MiB more RSS than a young
 * generation of 12–48 MiB (docs/performance.md), and scavenges of up to ~20 ms that hold every
 * request behind them. Flags cannot be set once V8 runs, but a worker thread's heap is sized when
 * it is made: the CLI runs the collector in one with YOUNG_GENERATION_MB, unless Node was started
 * with a young-generation flag of the user's own (that one is then obeyed, on the main thread).
 */

/**
 * The worker's young generation (V8 gives a third of it to each semi-space). At 48 MiB the
 * benchmark's RSS was 258–263 MiB at 97,000–101,500 spans/s, at 32 MiB 233–256 MiB at
 * 71,800–100,600, its CPU per span the same (docs/performance.md); below, scavenges come more
 * often and cost CPU (146 against 508 in 10 s at half rate, 48 against 12 MiB).
 */
export const YOUNG_GENERATION_MB = 32;

const YOUNG_GENERATION_FLAG = /^--(?:max|min)[-_](?:semi[-_]space|young[-_]generation)[-_]size\b/;

/** The young-generation flag Node was started with (command line or NODE_OPTIONS), if any. */
export function ownYoungGenerationFlag(execArgv: readonly string[], nodeOptions: string | undefined): string | undefined {
  const flags = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)];
  return flags.find((flag) => YOUNG_GENERATION_FLAG.test(flag));
}
