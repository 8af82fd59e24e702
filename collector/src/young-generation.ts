/**
 * The collector's young generation. Node 24 lets it grow to 128 MiB (two 64 MiB semi-spaces) on
 * a machine of a few GiB; under the benchmark's load that is about 100 MiB more RSS than a young
 * generation of 12–48 MiB (docs/performance.md), and scavenges of up to ~20 ms that hold every
 * request behind them. Flags cannot be set once V8 runs, but a worker thread's heap is sized when
 * it is made: the CLI runs the collector in one with YOUNG_GENERATION_MB, unless Node was started
 * with a young-generation flag of the user's own (that one is then obeyed, on the main thread).
 */

/**
 * The worker's young generation (V8 gives a third of it to each semi-space: 16 MiB). RSS under load
 * was the same from 12 to 48 MiB; the larger, the fewer scavenges (146 against 508 in 10 s at half
 * rate) and the less CPU (~3 %).
 */
export const YOUNG_GENERATION_MB = 48;

const YOUNG_GENERATION_FLAG = /^--(?:max|min)[-_](?:semi[-_]space|young[-_]generation)[-_]size\b/;

/** The young-generation flag Node was started with (command line or NODE_OPTIONS), if any. */
export function ownYoungGenerationFlag(execArgv: readonly string[], nodeOptions: string | undefined): string | undefined {
  const flags = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)];
  return flags.find((flag) => YOUNG_GENERATION_FLAG.test(flag));
}
