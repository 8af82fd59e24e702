#!/usr/bin/env node
/**
 * request-budget-collector: checks its options, then runs the collector (run-collector.ts) in a
 * worker thread with a small young generation (young-generation.ts), relaying SIGTERM and SIGINT
 * to it and exiting with its status. Exit status 2 for bad options or a bad budget file, 1 when it
 * cannot start (e.g. the port is taken); a second signal exits at once.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ConfigError, helpText, resolveConfig, type CliRequest, type CollectorConfig } from './config';
import type { CollectorWorkerData, StopMessage } from './collector-worker';
import { NAME, fail, runCollector } from './run-collector';
import { YOUNG_GENERATION_MB, ownYoungGenerationFlag } from './young-generation';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let request: CliRequest;
  try {
    request = resolveConfig(argv);
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
  if (ownYoungGenerationFlag(process.execArgv, process.env.NODE_OPTIONS) !== undefined) await runCollector(request.config, onSignal);
  else runInWorker(argv, request.config);
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

function runInWorker(argv: readonly string[], config: CollectorConfig): void {
  const workerData: CollectorWorkerData = { argv };
  const worker = new Worker(path.join(__dirname, 'collector-worker.js'), {
    workerData,
    resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
  });
  onSignal((signal) => worker.postMessage({ stop: signal } satisfies StopMessage));
  worker.on('error', (error: Error & { code?: string }) => {
    const why =
      error.code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? `the collector's JavaScript heap is full (${error.message}); lower --memory-limit (now ${config.memoryLimitBytes} bytes) or start Node with a larger --max-old-space-size`
        : `the collector failed: ${error.stack ?? error.message}`;
    fail(1, [why]);
  });
  // Its stdout and stderr reach the process's before 'exit' (Node drains them first).
  worker.on('exit', (code) => process.exit(code));
}

main().catch((error: unknown) => fail(1, [`cannot start: ${(error as Error)?.stack ?? String(error)}`]));
