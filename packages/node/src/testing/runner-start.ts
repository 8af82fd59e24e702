/**
 * Starts request-budget for a test run, the way the runner setups share: only when it is not
 * running already (a user's own start(), or --require), without a summary line per request and
 * without exporting traces unless the environment asks for it.
 */
import { activeConfig, start } from '../sdk';

/** Starts request-budget unless it runs already; returns whether it runs. */
export function startForTests(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  if (activeConfig() !== undefined) return true;
  const exportConfigured = Boolean(
    env.OTEL_TRACES_EXPORTER?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim(),
  );
  return start({
    ...(exportConfigured ? {} : { traceExporters: [] }),
    ...(env.REQUEST_BUDGET_SUMMARY?.trim() ? {} : { summary: false }),
    // The test runner owns the process's signals and exit.
    shutdownOnExit: false,
  });
}
