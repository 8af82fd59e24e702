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
import { resourceFromAttributes } from '@opentelemetry/resources';
import { TracerProvider, type SpanProcessor } from '@opentelemetry/sdk-trace';
import { BudgetRuleSet, parseBudgetText } from '@request-budget/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BudgetSpanProcessor } from '../src/budget-span-processor';
import { CostMetricsProcessor } from '../src/cost-metrics-processor';
import { CostSpanProcessor } from '../src/cost-span-processor';

const rules = new BudgetRuleSet(parseBudgetText('version: 1\ndefaults: { durationMs: 1000 }\nroutes:\n  - match: GET /users/:id\n    queries: 2\n', 'b.yaml'));
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 60_000 });
const meterProvider = new MeterProvider({ readers: [reader] });
const metricsProcessor = new CostMetricsProcessor({ rules, maxRoutes: 3, meter: meterProvider.getMeter('test') });
/** Two services' tracer providers feeding one metrics processor: their spans differ only by resource. */
const tracerOf = (service: string, processors: SpanProcessor[]) =>
  new TracerProvider({ resource: resourceFromAttributes({ 'service.name': service }), spanProcessors: processors }).getTracer('test');
const tracer = tracerOf('svc', [new CostSpanProcessor(), new BudgetSpanProcessor({ rules, serviceName: 'svc' }), metricsProcessor]);
const otherTracer = tracerOf('other', [new CostSpanProcessor(), new BudgetSpanProcessor({ rules, serviceName: 'other' }), metricsProcessor]);

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
});
afterAll(async () => {
  await meterProvider.shutdown();
  context.disable();
});

function request(route: string, queries: number, status = 200, on = tracer): void {
  const root = on.startSpan(`GET ${route}`, {
    kind: SpanKind.SERVER,
    attributes: { 'http.request.method': 'GET', 'http.route': route, 'http.response.status_code': status },
  });
  context.with(trace.setSpan(context.active(), root), () => {
    for (let i = 0; i < queries; i += 1)
      on.startSpan('q', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': `SELECT ${i}` } }).end();
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
  it('records per-route histograms by service, counts breaches, publishes limits, and caps the routes', async () => {
    request('/users/:id', 1);
    request('/users/:id', 3, 200);
    request('/orders', 0, 503);
    // Another service's same route is a series of its own, and takes one of the 3 places.
    request('/users/:id', 4, 200, otherTracer);
    request('/third', 0);
    const metric = await collect();

    const queries = metric('request_budget.db.queries') as HistogramMetricData;
    expect(queries.dataPointType).toBe(DataPointType.HISTOGRAM);
    const byRoute = Object.fromEntries(
      queries.dataPoints.map((p) => [`${p.attributes.service} ${p.attributes.route} ${p.attributes.status_class}`, [p.value.count, p.value.sum]]),
    );
    expect(byRoute).toEqual({
      'svc GET /users/:id 2xx': [2, 4],
      'svc GET /orders 5xx': [1, 0],
      'other GET /users/:id 2xx': [1, 4],
      'svc (other) 2xx': [1, 0],
    });

    const breaches = metric('request_budget.breaches');
    expect(breaches.dataPoints.map((p) => [p.attributes, p.value])).toEqual([
      [{ service: 'svc', route: 'GET /users/:id', metric: 'db.queries', severity: 'warning' }, 1],
      [{ service: 'other', route: 'GET /users/:id', metric: 'db.queries', severity: 'warning' }, 1],
    ]);

    const limits = metric('request_budget.limit');
    expect(limits.dataPoints.map((p) => [p.attributes, p.value])).toEqual([
      [{ service: 'svc', route: 'GET /users/:id', metric: 'db.queries' }, 2],
      [{ service: 'svc', route: 'GET /users/:id', metric: 'duration_ms' }, 1000],
      [{ service: 'svc', route: 'GET /orders', metric: 'duration_ms' }, 1000],
      [{ service: 'other', route: 'GET /users/:id', metric: 'db.queries' }, 2],
      [{ service: 'other', route: 'GET /users/:id', metric: 'duration_ms' }, 1000],
    ]);
  });
});
