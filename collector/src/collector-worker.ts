/**
 * The collector's worker thread (see young-generation.ts): runs the collector with the options the
 * main thread resolved and checked, and stops when the main thread relays a signal.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { CollectorConfig } from './config';
import { fail } from './cli-exit';
import { runCollector } from './run-collector';

/** What the main thread gives the worker: the resolved options (plain data, copied). */
export interface CollectorWorkerData {
  readonly config: CollectorConfig;
}
/** What the main thread sends it then: the signal to stop on. */
export interface StopMessage {
  readonly stop: NodeJS.Signals;
}

runCollector((workerData as CollectorWorkerData).config, (stop) => parentPort?.on('message', (message: StopMessage) => stop(message.stop))).catch(
  (error: unknown) => fail(1, [`cannot start: ${(error as Error)?.stack ?? String(error)}`]),
);
