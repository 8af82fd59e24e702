#!/usr/bin/env node
/**
 * request-budget-collector: checks its options, limits the growth of the old generation
 * (old-generation.ts) and the threads that mark it (marking-threads.ts), then runs the collector
 * (run-collector.ts) in a worker thread with a young generation of its own (young-generation.ts),
 * relaying SIGTERM and SIGINT to it and exiting with its status. Exit status 2 for bad options or a
 * bad budget file, 1 when it cannot start (e.g. the port is taken); a second signal exits at once.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { NAME, fail } from './cli-exit';
import { ConfigError, helpText, resolveConfig, type CliRequest, type CollectorConfig } from './config';
import type { CollectorWorkerData, StopMessage } from './collector-worker';
import { limitMarkingThreads } from './marking-threads';
import { limitOldGenerationGrowth } from './old-generation';
import { YOUNG_GENERATION_MB, ownYoungGenerationFlag } from './young-generation';

async function main(): Promise<void> {
  let request: CliRequest;
  try {
    request = resolveConfig(process.argv.slice(2));
  } catch (error) {
    if (error instanceof ConfigError) fail(2, [...error.problems, `run ${NAME} --help for the options`]);
    throw error;
  }
  if (request.kind === 'help') {
    process.stdout.write(helpText());
    return;
  }
  if (request.kind === 'version') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the package's own version, read only when asked for
    process.stdout.write(`${(require('../package.json') as { version: string }).version}\n`);
    return;
  }
  limitOldGenerationGrowth(process.execArgv);
  if (ownYoungGenerationFlag(process.execArgv, process.env.NODE_OPTIONS) === undefined) {
    // Before the worker is made: its heap reads the flag then (the main thread's is made already,
    // so the collector run below, on the main thread, keeps V8's marking threads).
    limitMarkingThreads(process.execArgv);
    runInWorker(request.config);
    return;
  }
  // Node's own flag sizes the heap: the collector runs here (loaded only now: the main thread of a
  // worker keeps none of it).
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- see above
  const { runCollector } = require('./run-collector') as typeof import('./run-collector');
  await runCollector(request.config, onSignal);
}

/** Calls `stop` at SIGTERM or SIGINT; a second one exits at once. */
function onSignal(stop: (signal: NodeJS.Signals) => void): void {
  let signals = 0;
  const handle = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) fail(1, [`${signal} again; exiting now`]);
    stop(signal);
  };
  process.on('SIGTERM', handle);
  process.on('SIGINT', handle);
}

function runInWorker(config: CollectorConfig): void {
  const workerData: CollectorWorkerData = { config };
  const worker = new Worker(path.join(__dirname, 'collector-worker.js'), {
    workerData,
    resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
  });
  onSignal((signal) => worker.postMessage({ stop: signal } satisfies StopMessage));
  // Said here; the exit status comes with 'exit', after what the worker wrote has been passed on.
  worker.on('error', (error: unknown) => {
    const { code, stack, message } = (error ?? {}) as NodeJS.ErrnoException;
    const why =
      code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? `the collector's JavaScript heap is full (${message}); lower --memory-limit (now ${config.memoryLimitBytes} bytes) or start Node with a larger --max-old-space-size`
        : `the collector failed: ${stack ?? message ?? String(error)}`;
    process.stderr.write(`${NAME}: ${why}\n`);
  });
  // The process ends once its output is written: nothing else keeps it alive.
  worker.on('exit', (code) => {
    process.exitCode = code;
  });
}

main().catch((error: unknown) => fail(1, [`cannot start: ${(error as Error)?.stack ?? String(error)}`]));
