/**
 * `npm run bench:micro`: what request-budget's span processors cost per span and per request,
 * in nanoseconds, against the same SDK with no processor of ours — measured in one run, the
 * variants interleaved. A "request" is a SERVER root with 3 DB query spans and 1 HTTP client
 * span under it, as the demo's 3-query route makes. The metrics variant's processor reports to a
 * Prometheus reader (its endpoint not started), as in production; its totals are checked after
 * each round, so what is timed is what a scrape would read.
 */
import assert from 'node:assert/strict';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { TracerProvider } from '@opentelemetry/sdk-trace';
import { BudgetRuleSet, loadBudgetFile } from '@request-budget/core';
import { BudgetSpanProcessor, CostMetricsProcessor, CostSpanProcessor } from '@request-budget/node';
import { median, perRoundDifferences, spread } from './paired-ratios.mjs';

const REQUESTS = Number(process.env.MICRO_REQUESTS ?? 50_000);
const ROUNDS = Number(process.env.MICRO_ROUNDS ?? 7);
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const rules = new BudgetRuleSet(loadBudgetFile('examples/demo/budgets.yaml'));

const variants = {
  'SDK only': () => [],
  '+ cost': () => [new CostSpanProcessor()],
  '+ cost + budget': () => [new CostSpanProcessor(), new BudgetSpanProcessor({ rules, serviceName: 'micro' })],
  '+ cost + budget + metrics': () => {
    const metrics = new CostMetricsProcessor({ rules });
    const reader = new PrometheusExporter({ preventServerStart: true, metricProducers: [metrics.metricProducer()] });
    new MeterProvider({ readers: [reader] });
    return Object.assign([new CostSpanProcessor(), new BudgetSpanProcessor({ rules, serviceName: 'micro' }), metrics], { reader });
  },
};

function oneRequest(tracer, i) {
  const root = tracer.startSpan('GET /users/:id/orders', {
    kind: SpanKind.SERVER,
    attributes: { 'http.request.method': 'GET', 'http.route': '/users/:id/orders', 'http.response.status_code': 200 },
  });
  context.with(trace.setSpan(context.active(), root), () => {
    for (let q = 0; q < 3; q += 1) {
      const span = tracer.startSpan('pg.query:SELECT demo', {
        kind: SpanKind.CLIENT,
        attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT * FROM demo_orders WHERE user_id = $1' },
      });
      span.setAttribute('db.response.returned_rows', i % 7);
      span.end();
    }
    tracer.startSpan('GET', { kind: SpanKind.CLIENT, attributes: { 'http.request.method': 'GET', 'request_budget.http_client.timed': true } }).end();
  });
  root.end();
}

async function measure(makeProcessors) {
  const processors = makeProcessors();
  const tracer = new TracerProvider({ spanProcessors: processors }).getTracer('micro');
  for (let i = 0; i < 2000; i += 1) oneRequest(tracer, i); // warm-up
  const start = process.hrtime.bigint();
  const cpuAtStart = process.cpuUsage();
  for (let i = 0; i < REQUESTS; i += 1) oneRequest(tracer, i);
  const cpu = process.cpuUsage(cpuAtStart);
  const elapsed = Number(process.hrtime.bigint() - start) / REQUESTS;
  if (processors.reader !== undefined) await assertRecorded(processors.reader, 2000 + REQUESTS);
  return { wall: elapsed, cpu: ((cpu.user + cpu.system) * 1000) / REQUESTS };
}

/** Every request is in the reader's duration histogram. */
async function assertRecorded(reader, requests) {
  const { resourceMetrics } = await reader.collect();
  const duration = resourceMetrics.scopeMetrics
    .flatMap((scope) => scope.metrics)
    .find((metric) => metric.descriptor.name === 'request_budget.request.duration_ms');
  assert.equal(
    duration?.dataPoints.reduce((sum, point) => sum + point.value.count, 0),
    requests,
  );
}

const results = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
for (let round = 0; round < ROUNDS; round += 1) {
  for (const [name, make] of Object.entries(variants)) {
    global.gc?.();
    results[name].push(await measure(make));
  }
}
const base = median(results['SDK only'].map((sample) => sample.wall));
process.stdout.write(`micro: ${REQUESTS} requests (5 spans each) × ${ROUNDS} rounds, medians, Node ${process.version}\n\n`);
process.stdout.write('| variant | ns per request | added by request-budget per request | per span |\n|---|---:|---:|---:|\n');
for (const [name, list] of Object.entries(results)) {
  const m = median(list.map((sample) => sample.wall));
  process.stdout.write(`| ${name} | ${m.toFixed(0)} | ${(m - base).toFixed(0)} | ${((m - base) / 5).toFixed(0)} |\n`);
}
// Metrics on vs off, round by round (the two ran back to back) in CPU time: steadier than wall
// time on a shared machine.
const metrics = spread(perRoundDifferences(results['+ cost + budget + metrics'], results['+ cost + budget'], 'cpu'), 0);
process.stdout.write(
  `\nmetrics on vs off: ${metrics.median} ns CPU per request (per-round differences: median, ${metrics.min} to ${metrics.max} over ${metrics.pairs} rounds)\n`,
);

// The metrics processor's own onEnd for each request's 5 spans, timed inside the pipeline (the
// spans just ended, as in an app): a median over requests shrugs off a busy machine's
// preemptions, which differences of whole runs do not. The timer's own cost is subtracted.
const onEndMedians = { timer: [], metrics: [] };
for (let round = 0; round < ROUNDS; round += 1) {
  onEndMedians.timer.push(medianOnEnd({ onStart() {}, onEnd() {}, forceFlush: async () => {}, shutdown: async () => {} }));
  const processor = new CostMetricsProcessor({ rules });
  new MeterProvider({ readers: [new PrometheusExporter({ preventServerStart: true, metricProducers: [processor.metricProducer()] })] });
  onEndMedians.metrics.push(medianOnEnd(processor));
}
const onEnd = median(onEndMedians.metrics) - median(onEndMedians.timer);
process.stdout.write(
  `metrics processor's onEnd per request, inside the pipeline: ${onEnd.toFixed(0)} ns (median over ${REQUESTS} requests, median of ${ROUNDS} rounds)\n`,
);

function medianOnEnd(processor) {
  let spent = 0;
  const timed = {
    onStart() {},
    onEnd(span) {
      const start = performance.now();
      processor.onEnd(span);
      spent += performance.now() - start;
    },
    forceFlush: async () => {},
    shutdown: async () => {},
  };
  const tracer = new TracerProvider({ spanProcessors: [new CostSpanProcessor(), new BudgetSpanProcessor({ rules, serviceName: 'micro' }), timed] }).getTracer(
    'micro',
  );
  for (let i = 0; i < 2000; i += 1) oneRequest(tracer, i); // warm-up
  const perRequest = new Float64Array(REQUESTS);
  for (let i = 0; i < REQUESTS; i += 1) {
    spent = 0;
    oneRequest(tracer, i);
    perRequest[i] = spent * 1e6;
  }
  return median(Array.from(perRequest));
}
