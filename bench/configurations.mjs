/**
 * The four configurations the benchmark compares, each a way of starting the demo app.
 * (a) no instrumentation, (b) plain OpenTelemetry http+pg with batch export, (c) request-budget
 * in full (cost attribution, budgets, metrics, alert log, OTLP export), (d) (c) with 10% trace
 * sampling. (b), (c) and (d) export to the same local OTLP sink.
 */
export const APP_SCRIPT = 'examples/demo/app.js';

/** @param {{ otlpUrl: string, otlpBase: string, metricsPort: () => number }} sink */
export function configurations(sink) {
  const requestBudget = () => ({
    args: ['--require', '@request-budget/node/register', APP_SCRIPT],
    env: {
      OTEL_SERVICE_NAME: 'bench-request-budget',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.otlpBase,
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(sink.metricsPort()),
      REQUEST_BUDGET_FILE: 'examples/demo/budgets.yaml',
    },
  });
  return {
    a: { label: 'no instrumentation', args: [APP_SCRIPT], env: {} },
    b: { label: 'plain OpenTelemetry (http+pg, batch OTLP)', args: ['--require', './bench/plain-otel.cjs', APP_SCRIPT], env: { BENCH_OTLP_URL: sink.otlpUrl } },
    c: { label: 'request-budget full', ...requestBudget() },
    d: {
      label: 'request-budget, 10% trace sampling',
      ...(() => {
        const config = requestBudget();
        return { args: config.args, env: { ...config.env, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' } };
      })(),
    },
  };
}
