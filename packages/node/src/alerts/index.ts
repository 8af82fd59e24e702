/**
 * The alert sinks on their own (`@request-budget/node/alerts`), kept for existing imports: they
 * live in @request-budget/alerts, which loads no OpenTelemetry package.
 */
export * from '@request-budget/alerts';
