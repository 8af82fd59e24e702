/**
 * The ways of starting the demo app that the benchmarks compare.
 *
 * `npm run bench`: (a) no instrumentation, (b) plain OpenTelemetry http+pg with batch export,
 * (c) request-budget in full (cost attribution, budgets, metrics, alert log, OTLP export),
 * (d) (c) with 10% trace sampling, (e) (b) with 10% trace sampling — what (d) is held against —
 * (f) (b) with the sampler always off: the floor of having the instrumentations patched, and
 * (g) (d) without memory attribution: what attributing each request's allocations costs (d/g).
 * Every configuration that exports sends to the same local OTLP sink.
 *
 * `npm run bench:floor`: (a), then plain OpenTelemetry with nothing sampled, first the SDK alone
 * and then its instrumentations added one at a time, then request-budget with nothing sampled.
 */
export const APP_SCRIPT = 'examples/demo/app.js';

// Set on every instrumented configuration, so a sampler in the caller's environment cannot leak in.
const ALWAYS_ON = { OTEL_TRACES_SAMPLER: 'parentbased_always_on' };
const TEN_PERCENT = { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' };
const NOTHING_SAMPLED = { OTEL_TRACES_SAMPLER: 'parentbased_always_off' };

/** @typedef {{ otlpUrl: string, otlpBase: string, metricsPort: () => number }} Sink */

/** @param {Sink} sink */
export function configurations(sink) {
  return {
    a: { label: 'no instrumentation', args: [APP_SCRIPT], env: {} },
    b: { label: 'plain OpenTelemetry (http+pg, batch OTLP)', ...plainOtel(sink, 'http,pg', ALWAYS_ON) },
    c: { label: 'request-budget full', ...requestBudget(sink, ALWAYS_ON) },
    d: { label: 'request-budget, 10% trace sampling', ...requestBudget(sink, TEN_PERCENT) },
    e: { label: 'plain OpenTelemetry, 10% trace sampling', ...plainOtel(sink, 'http,pg', TEN_PERCENT) },
    f: { label: 'plain OpenTelemetry, sampler always off', ...plainOtel(sink, 'http,pg', NOTHING_SAMPLED) },
    g: {
      label: 'request-budget, 10% trace sampling, no memory attribution',
      ...requestBudget(sink, TEN_PERCENT, { REQUEST_BUDGET_MEMORY_ATTRIBUTION: 'false' }),
    },
  };
}

/** @param {Sink} sink */
export function floorConfigurations(sink) {
  return {
    a: { label: 'no instrumentation', instrumentations: '—', args: [APP_SCRIPT], env: {} },
    // NodeSDK alone (context manager, propagators, tracer provider): what the SDK costs before any patch.
    sdk: { label: 'plain OpenTelemetry, always off: no instrumentation', instrumentations: 'none', ...plainOtel(sink, '', NOTHING_SAMPLED) },
    http: { label: 'plain OpenTelemetry, always off: http', instrumentations: 'http', ...plainOtel(sink, 'http', NOTHING_SAMPLED) },
    'http+pg': { label: 'plain OpenTelemetry, always off: http + pg', instrumentations: 'http, pg', ...plainOtel(sink, 'http,pg', NOTHING_SAMPLED) },
    'http+pg+express': {
      label: 'plain OpenTelemetry, always off: http + pg + express',
      instrumentations: 'http, pg, express (no layer spans)',
      ...plainOtel(sink, 'http,pg,express', NOTHING_SAMPLED),
    },
    'request-budget': {
      label: 'request-budget, always off (roots recorded, queries as light spans, for the cost record)',
      instrumentations: "request-budget's own set",
      ...requestBudget(sink, NOTHING_SAMPLED),
    },
  };
}

function plainOtel(sink, instrumentations, sampler) {
  return {
    plain: true,
    args: ['--require', './bench/plain-otel.cjs', APP_SCRIPT],
    env: { BENCH_OTLP_URL: sink.otlpUrl, BENCH_INSTRUMENTATIONS: instrumentations, ...sampler },
  };
}

function requestBudget(sink, sampler, extra = {}) {
  return {
    args: ['--require', '@request-budget/node/register', APP_SCRIPT],
    env: {
      OTEL_SERVICE_NAME: 'bench-request-budget',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.otlpBase,
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(sink.metricsPort()),
      REQUEST_BUDGET_FILE: 'examples/demo/budgets.yaml',
      ...sampler,
      ...extra,
    },
  };
}
