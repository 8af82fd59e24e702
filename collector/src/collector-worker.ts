/**
 * The collector's worker thread (see young-generation.ts): resolves the options the main thread
 * already checked, runs the collector, and stops when the main thread relays a signal.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ConfigError, resolveConfig } from './config';
import { fail, runCollector } from './run-collector';

/** What the main thread sends: its command line; then the signal to stop on. */
export interface CollectorWorkerData {
  readonly argv: readonly string[];
}
export interface StopMessage {
  readonly stop: NodeJS.Signals;
}

let request;
try {
  request = resolveConfig((workerData as CollectorWorkerData).argv);
} catch (error) {
  // The main thread resolved the same options a moment ago; only a file changed since can fail here.
  if (error instanceof ConfigError) fail(2, error.problems);
  throw error;
}
if (request.kind !== 'run') fail(2, ['the collector worker was started without a configuration to run']);
runCollector(request.config, (stop) => parentPort?.on('message', (message: StopMessage) => stop(message.stop))).catch((error: unknown) =>
  fail(1, [`cannot start: ${(error as Error)?.stack ?? String(error)}`]),
);
