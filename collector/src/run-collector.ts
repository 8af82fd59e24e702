/**
 * One running collector, on whichever thread the CLI put it: starts it, says where it listens,
 * survives what escapes, and on a stop request (SIGTERM/SIGINT, relayed to a worker) delivers what
 * it holds within --shutdown-timeout before exiting. Exit status 2 for a bad budget file, 1 when it
 * cannot start (e.g. the port is taken) or its shutdown fails.
 */
import { BudgetFileError } from '@request-budget/core';
import type { CollectorConfig } from './config';
import { startCollector, type RunningCollector } from './collector';
import { NAME, fail } from './cli-exit';

/** Starts the collector; `onStop` is given the function to call when a stop is asked for. */
export async function runCollector(config: CollectorConfig, onStop: (stop: (signal: NodeJS.Signals) => void) => void): Promise<void> {
  let collector: RunningCollector;
  try {
    collector = await startCollector(config);
  } catch (error) {
    if (error instanceof BudgetFileError) fail(2, [`budget file ${error.source} rejected:`, ...error.problems.map((problem) => `  ${problem}`)]);
    const code = (error as NodeJS.ErrnoException).code;
    fail(1, [`cannot start: ${code === 'EADDRINUSE' ? `${config.listenHost}:${config.listenPort} is in use` : (error as Error).message}`]);
  }
  const downstreams =
    [config.otlpEndpoint && `OTLP ${config.otlpEndpoint}`, config.zipkinEndpoint && `Zipkin ${config.zipkinEndpoint}`].filter(Boolean).join(', ') || 'none';
  process.stdout.write(
    `${NAME} listening on ${collector.url}${collector.grpcAddress === undefined ? '' : ` and grpc://${collector.grpcAddress}`} (budgets: ${config.budgetsPath ?? 'none'}; forwarding to: ${downstreams})\n`,
  );

  // Bad input is answered where it arrives; anything that still escapes is logged, counted and
  // survived: the service must not go down with the spans it holds.
  process.on('uncaughtException', (error) => {
    collector.metrics.internalErrors.inc();
    process.stderr.write(`${NAME}: unexpected error (the collector keeps running): ${error.stack ?? error.message}\n`);
  });
  process.on('unhandledRejection', (reason) => {
    collector.metrics.internalErrors.inc();
    process.stderr.write(`${NAME}: unexpected rejection (the collector keeps running): ${(reason as Error)?.stack ?? String(reason)}\n`);
  });
  let stopping = false;
  onStop((signal) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${NAME}: ${signal}: delivering what is held (at most ${config.shutdownTimeoutMs} ms), then exiting\n`);
    // Held (ref'd) until shutdown ends: the collector's own timers do not keep the process alive.
    const watchdog = setTimeout(
      () => fail(1, [`shutdown did not finish within ${config.shutdownTimeoutMs + 5000} ms; exiting`]),
      config.shutdownTimeoutMs + 5000,
    );
    collector.shutdown().then(
      () => {
        clearTimeout(watchdog);
        process.stderr.write(`${NAME}: stopped\n`);
        process.exit(0);
      },
      (error: unknown) => fail(1, [`shutdown failed: ${(error as Error)?.message ?? String(error)}`]),
    );
  });
}
