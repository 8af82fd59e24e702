/**
 * request-budget's own messages to the operator: one line each on stderr, prefixed so they can
 * be grepped, and never thrown. The OpenTelemetry `diag` logger is silent unless
 * OTEL_LOG_LEVEL is set, which would hide configuration mistakes, so these bypass it.
 */

const PREFIX = 'request-budget:';

/** Writes one diagnostic line to stderr. Failures to write are ignored: diagnostics never break the app. */
export function reportProblem(message: string): void {
  try {
    process.stderr.write(`${PREFIX} ${message}\n`);
  } catch {
    // stderr closed: nothing sensible left to do.
  }
}

/** The message of anything thrown, for a diagnostic line. */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
