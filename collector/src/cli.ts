#!/usr/bin/env node
/**
 * request-budget-collector: reads its configuration, starts the collector, and on SIGTERM or
 * SIGINT delivers what it holds (within --shutdown-timeout) before exiting. Exit status 2 for
 * bad options or a bad budget file, 1 when it cannot start (e.g. the port is taken).
 */
import { BudgetFileError } from '@request-budget/core';
import { ConfigError, helpText, resolveConfig, type CliRequest } from './config';
import { startCollector, type RunningCollector } from './collector';

const NAME = 'request-budget-collector';

function fail(code: number, lines: readonly string[]): never {
  for (const line of lines) process.stderr.write(`${NAME}: ${line}\n`);
  process.exit(code);
}

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
  const { config } = request;
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
  let signals = 0;
  const stop = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      process.stderr.write(`${NAME}: ${signal} again; exiting now\n`);
      process.exit(1);
    }
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
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => fail(1, [`cannot start: ${(error as Error)?.stack ?? String(error)}`]));
