/**
 * The CLI runs the collector in a worker thread with a young generation of its own (young-generation.ts),
 * unless Node was started with a young-generation flag of the user's own: then that flag sizes it,
 * on the main thread. Either way the collector starts, forwards and stops on SIGTERM as before.
 * Before it makes the worker, the CLI limits V8's marking threads to the cores it may run on
 * (marking-threads.ts).
 */
import v8 from 'node:v8';
import { afterEach, describe, expect, it } from 'vitest';
import { startOtlpReceiver, type OtlpReceiver } from '../../test/support/otlp-receiver';
import { limitMarkingThreads, markingThreadsFor, MAX_MARKING_THREADS, MIN_MARKING_THREADS, ownMarkingThreadsFlag } from '../src/marking-threads';
import { ownHeapGrowthFlag } from '../src/old-generation';
import { YOUNG_GENERATION_MB, ownYoungGenerationFlag } from '../src/young-generation';
import { COLLECTOR_BUDGETS, startCollectorProcess, type CollectorProcess } from './support/collector-process';
import { ordersTrace, postOtlp, toOtlpProtobuf } from './support/synthetic-trace';

describe('ownYoungGenerationFlag', () => {
  it('finds a young-generation flag on the command line or in NODE_OPTIONS, in either spelling', () => {
    expect(ownYoungGenerationFlag(['--max-semi-space-size=8'], undefined)).toBe('--max-semi-space-size=8');
    expect(ownYoungGenerationFlag([], ' --enable-source-maps  --max_young_generation_size=24 ')).toBe('--max_young_generation_size=24');
    expect(ownYoungGenerationFlag(['--min-semi-space-size', '2'], '')).toBe('--min-semi-space-size');
  });

  it('ignores other heap flags and look-alikes', () => {
    expect(ownYoungGenerationFlag(['--max-old-space-size=512', '--cpu-prof'], '--max-semi-space-sizes=1 --inspect')).toBeUndefined();
    expect(ownYoungGenerationFlag([], undefined)).toBeUndefined();
  });
});

describe('ownHeapGrowthFlag', () => {
  it("finds the user's own heap-growth flag on the command line, in either spelling, and nothing else", () => {
    expect(ownHeapGrowthFlag(['--heap-growing-percent=300'])).toBe('--heap-growing-percent=300');
    expect(ownHeapGrowthFlag(['--cpu-prof', '--heap_growing_percent', '50'])).toBe('--heap_growing_percent');
    expect(ownHeapGrowthFlag(['--max-old-space-size=512', '--heap-growing-percentage=5'])).toBeUndefined();
    expect(ownHeapGrowthFlag([])).toBeUndefined();
  });
});

describe('markingThreadsFor', () => {
  it("gives one marking thread per core less the collector's own, between MIN_MARKING_THREADS and V8's default", () => {
    expect([MIN_MARKING_THREADS, MAX_MARKING_THREADS]).toEqual([2, 7]);
    // Never above V8's own default of 7.
    expect([1, 2, 3, 4, 8, 16].map((cores) => markingThreadsFor(cores))).toEqual([2, 2, 2, 3, 7, 7]);
    // A fraction counts whole cores only.
    expect(markingThreadsFor(4.5)).toBe(3);
  });
});

describe('ownMarkingThreadsFlag and limitMarkingThreads', () => {
  it("finds the user's own marking-threads flag, in either spelling, and nothing else", () => {
    expect(ownMarkingThreadsFlag(['--concurrent-marking-max-worker-num=3'])).toBe('--concurrent-marking-max-worker-num=3');
    expect(ownMarkingThreadsFlag(['--cpu-prof', '--concurrent_marking_max_worker_num', '1'])).toBe('--concurrent_marking_max_worker_num');
    expect(ownMarkingThreadsFlag(['--concurrent-marking', '--no-concurrent-marking-max', '--max-old-space-size=512'])).toBeUndefined();
    expect(ownMarkingThreadsFlag([])).toBeUndefined();
  });

  it("leaves the user's flag alone, and otherwise sets the number for the cores given", () => {
    expect(limitMarkingThreads(['--concurrent-marking-max-worker-num=5'], 1)).toBeUndefined();
    // Only heaps made from now on read it (none in this test); V8's default is restored after.
    try {
      expect(limitMarkingThreads([], 1)).toBe(2);
      expect(limitMarkingThreads([], 6)).toBe(5);
      expect(limitMarkingThreads([], 64)).toBe(7);
    } finally {
      v8.setFlagsFromString('--concurrent-marking-max-worker-num=7');
    }
  });
});

describe('the collector process', () => {
  let receiver: OtlpReceiver | undefined;
  let collector: CollectorProcess | undefined;
  afterEach(async () => {
    await collector?.stop();
    await receiver?.close();
  });

  const runOnce = async (env: Record<string, string>) => {
    receiver = await startOtlpReceiver();
    collector = await startCollectorProcess(['--budgets', COLLECTOR_BUDGETS, '--otlp-endpoint', receiver.url, '--grace-period', '100ms'], env);
    const young = await collector.metric('request_budget_collector_young_generation_limit_bytes');
    const trace = ordersTrace();
    expect((await postOtlp(collector.tracesUrl, toOtlpProtobuf(trace), 'application/x-protobuf')).status).toBe(200);
    expect(await collector.stop('SIGTERM', 10_000)).toBe(0);
    expect(collector.stderrLines).toContain('request-budget-collector: stopped');
    expect(receiver.spans.length).toBe(trace.spans.length);
    return young;
  };

  it(`runs the collector with a ${YOUNG_GENERATION_MB} MiB young generation by default`, async () => {
    expect(await runOnce({ NODE_OPTIONS: '' })).toBe(YOUNG_GENERATION_MB * 1024 * 1024);
  });

  it("leaves the young generation to Node's flag when one is given", async () => {
    expect(await runOnce({ NODE_OPTIONS: '--max-semi-space-size=8' })).toBe(0);
  });
});
