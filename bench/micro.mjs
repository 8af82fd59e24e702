/**
 * `npm run bench:micro`: what request-budget's span processors cost per span and per request,
 * in nanoseconds, against the same SDK with no processor of ours — measured in one run, the
 * variants interleaved. A "request" is a SERVER root with 3 DB query spans and 1 HTTP client
 * span under it, as the demo's 3-query route makes.
 */
import { context, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { TracerProvider } from '@opentelemetry/sdk-trace';
import { BudgetRuleSet, loadBudgetFile } from '@request-budget/core';
import { BudgetSpanProcessor, CostMetricsProcessor, CostSpanProcessor } from '@request-budget/node';
import { median } from './report.mjs';

const REQUESTS = Number(process.env.MICRO_REQUESTS ?? 50_000);
const ROUNDS = Number(process.env.MICRO_ROUNDS ?? 7);
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const rules = new BudgetRuleSet(loadBudgetFile('examples/demo/budgets.yaml'));
const meter = new MeterProvider().getMeter('micro');

const variants = {
  'SDK only': () => [],
  '+ cost': () => [new CostSpanProcessor()],
  '+ cost + budget': () => [new CostSpanProcessor(), new BudgetSpanProcessor({ rules, serviceName: 'micro' })],
  '+ cost + budget + metrics': () => [
    new CostSpanProcessor(),
    new BudgetSpanProcessor({ rules, serviceName: 'micro' }),
    new CostMetricsProcessor({ rules, meter }),
  ],
};

function oneRequest(tracer, i) {
  const root = tracer.startSpan('GET /users/:id/orders', {
    kind: SpanKind.SERVER,
    attributes: { 'http.request.method': 'GET', 'http.route': '/users/:id/orders', 'http.response.status_code': 200 },
  });
  context.with(trace.setSpan(context.active(), root), () => {
    for (let q = 0; q < 3; q += 1) {
      const span = tracer.startSpan('pg.query:SELECT demo', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT * FROM demo_orders WHERE user_id = $1' } });
      span.setAttribute('db.response.returned_rows', i % 7);
      span.end();
    }
    tracer.startSpan('GET', { kind: SpanKind.CLIENT, attributes: { 'http.request.method': 'GET', 'request_budget.http_client.timed': true } }).end();
  });
  root.end();
}

function measure(makeProcessors) {
  const tracer = new TracerProvider({ spanProcessors: makeProcessors() }).getTracer('micro');
  for (let i = 0; i < 2000; i += 1) oneRequest(tracer, i); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < REQUESTS; i += 1) oneRequest(tracer, i);
  return Number(process.hrtime.bigint() - start) / REQUESTS;
}

const results = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
for (let round = 0; round < ROUNDS; round += 1) {
  for (const [name, make] of Object.entries(variants)) {
    global.gc?.();
    results[name].push(measure(make));
  }
}
const base = median(results['SDK only']);
process.stdout.write(`micro: ${REQUESTS} requests (5 spans each) × ${ROUNDS} rounds, medians, Node ${process.version}\n\n`);
process.stdout.write('| variant | ns per request | added by request-budget per request | per span |\n|---|---:|---:|---:|\n');
for (const [name, list] of Object.entries(results)) {
  const m = median(list);
  process.stdout.write(`| ${name} | ${m.toFixed(0)} | ${(m - base).toFixed(0)} | ${((m - base) / 5).toFixed(0)} |\n`);
}

