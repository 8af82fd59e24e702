/**
 * `npm run bench:soak`: 1,000,000 requests (a SERVER root, 3 DB spans and 1 HTTP client span each)
 * through request-budget's processors and a batch exporter, with distinct routes and statements
 * so every bounded structure fills up; the heap after a forced GC is sampled every 100,000
 * requests. It holds when the retained heap does not grow with the count (after warm-up, its
 * spread stays under 2 MiB). Writes bench/results/soak.json.
 */
import { context, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { BudgetRuleSet, loadBudgetFile } from '@request-budget/core';
import { AlertDispatcher, BudgetSpanProcessor, CostMetricsProcessor, CostSpanProcessor, LogAlertSink } from '@request-budget/node';
import { mkdirSync, writeFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';

const TOTAL = Number(process.env.SOAK_REQUESTS ?? 1_000_000);
const SAMPLE_EVERY = TOTAL / 10;
const LIMIT_BYTES = 2 * 1024 * 1024;
if (typeof global.gc !== 'function') throw new Error('run with --expose-gc (npm run bench:soak does)');

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const rules = new BudgetRuleSet(loadBudgetFile('examples/demo/budgets.yaml'));
const alerts = new AlertDispatcher([new LogAlertSink({ write: () => {} })]);
let exported = 0;
const exporter = {
  export: (spans, done) => {
    exported += spans.length;
    done({ code: 0 });
  },
  shutdown: async () => {},
};
const costMetrics = new CostMetricsProcessor({ rules });
// A reader that is collected, as Prometheus would scrape: the metrics' state is part of the soak.
const metricReader = new PeriodicExportingMetricReader({
  exporter: { export: (_metrics, done) => done({ code: 0 }), shutdown: async () => {}, forceFlush: async () => {} },
  exportIntervalMillis: 1000,
  metricProducers: [costMetrics.metricProducer()],
});
const meterProvider = new MeterProvider({ readers: [metricReader] });
const tracer = new TracerProvider({
  spanProcessors: [
    new CostSpanProcessor(),
    new BudgetSpanProcessor({ rules, serviceName: 'soak', onBreach: (reports) => alerts.report(reports) }),
    costMetrics,
    new BatchSpanProcessor({ exporter, maxQueueSize: 4096, scheduledDelayMillis: 5 }),
  ],
}).getTracer('soak');

function request(i) {
  const route = `/route-${i % 1000}/:id`; // more routes than the metrics keep: the cap is exercised
  const root = tracer.startSpan(`GET ${route}`, {
    kind: SpanKind.SERVER,
    attributes: { 'http.request.method': 'GET', 'http.route': route, 'http.response.status_code': 200 },
  });
  context.with(trace.setSpan(context.active(), root), () => {
    for (let q = 0; q < 3; q += 1) {
      // Inlined literals: every statement text is new, the fingerprint cache keeps turning over.
      tracer
        .startSpan('pg.query', {
          kind: SpanKind.CLIENT,
          attributes: { 'db.system.name': 'postgresql', 'db.query.text': `SELECT * FROM t${q} WHERE id = ${i}` },
        })
        .end();
    }
    tracer.startSpan('GET', { kind: SpanKind.CLIENT, attributes: { 'http.request.method': 'GET', 'request_budget.http_client.timed': false } }).end();
  });
  root.end();
}

const samples = [];
const started = Date.now();
for (let i = 1; i <= TOTAL; i += 1) {
  request(i);
  if (i % 5000 === 0) await new Promise((resolve) => setImmediate(resolve)); // let the batch exporter run
  if (i % SAMPLE_EVERY === 0) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    global.gc();
    global.gc();
    samples.push({ requests: i, heapUsed: getHeapStatistics().used_heap_size });
    process.stdout.write(`soak: ${i.toLocaleString('en')} requests, heap after GC ${(samples.at(-1).heapUsed / 2 ** 20).toFixed(2)} MiB\n`);
  }
}
const steady = samples.slice(2).map((s) => s.heapUsed);
const spread = Math.max(...steady) - Math.min(...steady);
const result = {
  requests: TOTAL,
  spans: TOTAL * 5,
  exportedSpans: exported,
  seconds: (Date.now() - started) / 1000,
  samples,
  steadySpreadBytes: spread,
  target: { value: spread, target: `< ${LIMIT_BYTES} bytes spread after warm-up`, holds: spread < LIMIT_BYTES },
  alertStats: alerts.stats(),
};
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/soak.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(
  `soak: ${TOTAL} requests in ${result.seconds.toFixed(0)} s; retained heap spread after warm-up ${(spread / 1024).toFixed(0)} KiB — ${result.target.holds ? 'holds' : 'DOES NOT HOLD'}\n`,
);
await meterProvider.shutdown();
