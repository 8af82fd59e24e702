/**
 * The cost meter provider's readers report the cost metrics: OTLP over HTTP (JSON) to a real
 * local receiver, cumulative by default and delta when the exporter is told so, with the names,
 * units, descriptions and buckets the SDK instruments had.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BUDGET_BREACH_EVENT, BudgetRuleSet, COST_DB_QUERIES, HTTP_REQUEST_METHOD, HTTP_ROUTE, parseBudgetText } from '@request-budget/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config';
import { ExporterConnections } from '../src/exporter-connections';
import { createCostMeterProvider } from '../src/meter-provider';

interface OtlpMetric {
  name: string;
  unit?: string;
  description?: string;
  histogram?: { aggregationTemporality: number; dataPoints: OtlpPoint[] };
  sum?: { aggregationTemporality: number; isMonotonic: boolean; dataPoints: OtlpPoint[] };
  gauge?: { dataPoints: OtlpPoint[] };
}
interface OtlpPoint {
  attributes: { key: string; value: { stringValue?: string } }[];
  count?: string | number;
  sum?: number;
  min?: number;
  max?: number;
  bucketCounts?: (string | number)[];
  explicitBounds?: number[];
  asDouble?: number;
}
interface OtlpRequest {
  resourceMetrics: { scopeMetrics: { scope: { name: string }; metrics: OtlpMetric[] }[] }[];
}

const rules = new BudgetRuleSet(parseBudgetText('version: 1\nroutes:\n  - match: GET /users/:id\n    queries: 2\n', 'b.yaml'));
let server: http.Server;
let received: OtlpRequest[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpRequest);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
afterEach(() => {
  received = [];
  delete process.env.OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE;
});

/** A provider exporting OTLP/JSON to the local receiver, fed two requests; the metrics it exports on each flush, by name. */
async function exportTwice() {
  const { port } = server.address() as AddressInfo;
  const env = {
    OTEL_METRICS_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json',
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `http://127.0.0.1:${port}/v1/metrics`,
    OTEL_SERVICE_NAME: 'shop',
  };
  const config = resolveConfig({}, env, (problem) => expect.fail(problem));
  const connections = new ExporterConnections();
  const meter = createCostMeterProvider(config, [], connections, rules)!;
  // No service.name on the span's resource: the provider's own names the service.
  const span = (queries: number) =>
    ({
      attributes: { [HTTP_REQUEST_METHOD]: 'GET', [HTTP_ROUTE]: '/users/:id', 'http.response.status_code': 200, [COST_DB_QUERIES]: queries },
      duration: [0, 2_000_000],
      events: queries > 2 ? [{ name: BUDGET_BREACH_EVENT, attributes: { metric: 'db.queries', severity: 'warning' }, time: [0, 0] }] : [],
      resource: resourceFromAttributes({}),
    }) as unknown as ReadableSpan;
  const flushes: Map<string, OtlpMetric>[] = [];
  const flush = async () => {
    await meter.provider.forceFlush();
    const scopes = received.splice(0).flatMap((request) => request.resourceMetrics.flatMap((r) => r.scopeMetrics));
    const ours = scopes.filter((scope) => scope.metrics.some((metric) => metric.name.startsWith('request_budget.db')));
    expect(ours.map((scope) => scope.scope.name)).toEqual(['@request-budget/node']);
    flushes.push(new Map(ours[0]!.metrics.map((metric) => [metric.name, metric])));
  };
  meter.costMetrics.onEnd(span(1));
  meter.costMetrics.onEnd(span(3));
  await flush();
  meter.costMetrics.onEnd(span(2));
  await flush();
  await meter.provider.shutdown();
  connections.release();
  return flushes;
}

const labelsOf = (point: OtlpPoint) => Object.fromEntries(point.attributes.map((a) => [a.key, a.value.stringValue]));
const histogramOf = (metric: OtlpMetric) => {
  const point = metric.histogram!.dataPoints[0]!;
  return {
    temporality: metric.histogram!.aggregationTemporality,
    labels: labelsOf(point),
    count: Number(point.count),
    sum: point.sum,
    min: point.min,
    max: point.max,
    buckets: point.bucketCounts!.map(Number),
    bounds: point.explicitBounds,
  };
};

describe('cost meter provider, OTLP', () => {
  it('exports cumulative histograms, counters and the limit gauge with their names, units and buckets', async () => {
    const [first, second] = await exportTwice();
    const queries = first!.get('request_budget.db.queries')!;
    expect([queries.unit, queries.description]).toEqual(['{query}', 'DB operations per request']);
    expect(histogramOf(queries)).toEqual({
      temporality: 2,
      labels: { service: 'shop', route: 'GET /users/:id', status_class: '2xx' },
      count: 2,
      sum: 4,
      min: 1,
      max: 3,
      buckets: [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
      bounds: [0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000],
    });
    expect(histogramOf(second!.get('request_budget.db.queries')!)).toMatchObject({
      count: 3,
      sum: 6,
      min: 1,
      max: 3,
      buckets: [0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    });
    const duration = first!.get('request_budget.request.duration_ms')!;
    expect([duration.unit, duration.description, histogramOf(duration).sum, histogramOf(duration).bounds]).toEqual([
      'ms',
      'Request (or job) duration',
      4,
      [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    ]);
    const breaches = second!.get('request_budget.breaches')!;
    expect([breaches.sum!.aggregationTemporality, breaches.sum!.isMonotonic, breaches.sum!.dataPoints.map((p) => [labelsOf(p), p.asDouble])]).toEqual([
      2,
      true,
      [[{ service: 'shop', route: 'GET /users/:id', metric: 'db.queries', severity: 'warning' }, 1]],
    ]);
    expect(first!.get('request_budget.limit')!.gauge!.dataPoints.map((p) => [labelsOf(p), p.asDouble])).toEqual([
      [{ service: 'shop', route: 'GET /users/:id', metric: 'db.queries' }, 2],
    ]);
  });

  it('exports deltas when OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta', async () => {
    process.env.OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE = 'delta';
    const [first, second] = await exportTwice();
    expect(histogramOf(first!.get('request_budget.db.queries')!)).toMatchObject({ temporality: 1, count: 2, sum: 4, min: 1, max: 3 });
    expect(histogramOf(second!.get('request_budget.db.queries')!)).toMatchObject({
      temporality: 1,
      count: 1,
      sum: 2,
      min: 2,
      max: 2,
      buckets: [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    });
    expect(first!.get('request_budget.breaches')!.sum!.aggregationTemporality).toBe(1);
    // No breach since the first export: no breach point.
    expect(second!.has('request_budget.breaches')).toBe(false);
  });
});
