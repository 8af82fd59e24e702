import { context, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type HistogramMetricData,
} from '@opentelemetry/sdk-metrics';
import { TracerProvider } from '@opentelemetry/sdk-trace';
import { BudgetRuleSet, parseBudgetText } from '@request-budget/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BudgetSpanProcessor } from '../src/budget-span-processor';
import { CostMetricsProcessor } from '../src/cost-metrics-processor';
import { CostSpanProcessor } from '../src/cost-span-processor';

const rules = new BudgetRuleSet(parseBudgetText('version: 1\ndefaults: { durationMs: 1000 }\nroutes:\n  - match: GET /users/:id\n    queries: 2\n', 'b.yaml'));
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 60_000 });
const meterProvider = new MeterProvider({ readers: [reader] });
const tracer = new TracerProvider({
  spanProcessors: [
    new CostSpanProcessor(),
    new BudgetSpanProcessor({ rules, serviceName: 'svc' }),
    new CostMetricsProcessor({ rules, maxRoutes: 2, meter: meterProvider.getMeter('test') }),
  ],
}).getTracer('test');

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
});
afterAll(async () => {
  await meterProvider.shutdown();
  context.disable();
});

function request(route: string, queries: number, status = 200): void {
  const root = tracer.startSpan(`GET ${route}`, {
    kind: SpanKind.SERVER,
    attributes: { 'http.request.method': 'GET', 'http.route': route, 'http.response.status_code': status },
  });
  context.with(trace.setSpan(context.active(), root), () => {
    for (let i = 0; i < queries; i += 1)
      tracer.startSpan('q', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': `SELECT ${i}` } }).end();
  });
  root.end();
}

async function collect() {
  await reader.forceFlush();
  const metrics = metricExporter
    .getMetrics()
    .at(-1)!
    .scopeMetrics.flatMap((scope) => scope.metrics);
  return (name: string) => metrics.find((metric) => metric.descriptor.name === name)!;
}

describe('CostMetricsProcessor', () => {
  it('records per-route histograms, counts breaches, publishes limits, and caps the routes', async () => {
    request('/users/:id', 1);
    request('/users/:id', 3, 200);
    request('/orders', 0, 503);
    request('/third', 0);
    const metric = await collect();

    const queries = metric('request_budget.db.queries') as HistogramMetricData;
    expect(queries.dataPointType).toBe(DataPointType.HISTOGRAM);
    const byRoute = Object.fromEntries(queries.dataPoints.map((p) => [`${p.attributes.route} ${p.attributes.status_class}`, [p.value.count, p.value.sum]]));
    expect(byRoute).toEqual({ 'GET /users/:id 2xx': [2, 4], 'GET /orders 5xx': [1, 0], '(other) 2xx': [1, 0] });

    const breaches = metric('request_budget.breaches');
    expect(breaches.dataPoints.map((p) => [p.attributes, p.value])).toEqual([[{ route: 'GET /users/:id', metric: 'db.queries', severity: 'warning' }, 1]]);

    const limits = metric('request_budget.limit');
    expect(limits.dataPoints.map((p) => [p.attributes, p.value])).toEqual([
      [{ route: 'GET /users/:id', metric: 'db.queries' }, 2],
      [{ route: 'GET /users/:id', metric: 'duration_ms' }, 1000],
      [{ route: 'GET /orders', metric: 'duration_ms' }, 1000],
    ]);
  });
});
