import { context, SpanKind, trace, type Attributes } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type HistogramMetricData,
  type MetricData,
  type SumMetricData,
} from '@opentelemetry/sdk-metrics';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { TracerProvider, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace';
import {
  BUDGET_BREACH_EVENT,
  BUDGET_UNJUDGED,
  BudgetRuleSet,
  COST_DB_BYTES,
  COST_DB_QUERIES,
  COST_DB_ROWS,
  COST_DB_TIME_MS,
  COST_HEAP_DELTA_BYTES,
  COST_JOBS_ENQUEUED,
  COST_MEMORY_ALLOCATED_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES,
  HTTP_METHOD_LEGACY,
  HTTP_REQUEST_METHOD,
  HTTP_ROUTE,
  JOB_NAME_ATTRIBUTE,
  MEASUREMENT_ATTRIBUTE,
  MESSAGING_DESTINATION_NAME,
  parseBudgetText,
  routeOf,
  type CostContribution,
} from '@request-budget/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../../test/support/free-port';
import { BudgetSpanProcessor } from '../src/budget-span-processor';
import { CostMetricsProcessor } from '../src/cost-metrics-processor';
import { CostSpanProcessor } from '../src/cost-span-processor';
import { markLateOperation } from '../src/late-operations';

const rules = new BudgetRuleSet(
  parseBudgetText(
    'version: 1\ndefaults: { durationMs: 1000 }\nroutes:\n  - match: GET /users/:id\n    queries: 2\njobs:\n  - match: mail.send\n    queries: 5\n',
    'b.yaml',
  ),
);
const SCOPE = 'otel_scope_name="@request-budget/node"';
const COUNT_BOUNDS = [0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000];
const MS_BOUNDS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
const BYTES_BOUNDS = [65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456];
const ALLOCATED_BOUNDS = [4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456];
const WIRE_BOUNDS = [0, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];
/** `budget.unjudged` entries as core's judge writes them. */
const HEAP_UNJUDGED = 'heap.delta_bytes: 3 requests in flight (heapMinConfidence medium; allocatedBytes holds under load)';
const DB_BYTES_UNJUDGED = 'db.bytes: not measured (a query went through a driver that does not report result bytes)';
const ALLOCATED_UNJUDGED = 'memory.allocated_bytes: not measured (memory attribution is off or could not start)';

// ---- root spans as the processor reads them: attributes, duration, events, resource, nothing else ----

/** One resource object per service, as a tracer provider's spans share one. */
const resources = new Map<string, Resource>();
const resourceOf = (service: string | undefined) => {
  const key = service ?? '';
  if (!resources.has(key)) resources.set(key, resourceFromAttributes(service === undefined ? {} : { 'service.name': service }));
  return resources.get(key)!;
};

interface RootSpec {
  readonly service?: string;
  readonly attributes: Attributes;
  readonly ms: number;
  readonly queries: number;
  readonly dbTimeMs?: number;
  readonly rows?: number;
  readonly heapDelta?: number;
  readonly enqueued?: number;
  /** Absent unless given, as when memory attribution is off or a driver reported no bytes. */
  readonly allocated?: number;
  readonly dbBytes?: number;
  /** [estimate, error]: cost.memory.route_estimate_bytes and its error. */
  readonly estimate?: readonly [number, number];
  readonly unjudged?: readonly string[];
  /** [metric, severity] of each breach event. */
  readonly breaches?: readonly (readonly [string, string])[];
  readonly measurement?: boolean;
}

function root(spec: RootSpec): ReadableSpan {
  const attributes: Attributes = {
    ...spec.attributes,
    [COST_DB_QUERIES]: spec.queries,
    [COST_DB_TIME_MS]: spec.dbTimeMs ?? 0,
    [COST_DB_ROWS]: spec.rows ?? 0,
    [COST_HEAP_DELTA_BYTES]: spec.heapDelta ?? 0,
    ...(spec.enqueued !== undefined ? { [COST_JOBS_ENQUEUED]: spec.enqueued } : {}),
    ...(spec.allocated !== undefined ? { [COST_MEMORY_ALLOCATED_BYTES]: spec.allocated } : {}),
    ...(spec.dbBytes !== undefined ? { [COST_DB_BYTES]: spec.dbBytes } : {}),
    ...(spec.estimate !== undefined
      ? { [COST_MEMORY_ROUTE_ESTIMATE_BYTES]: spec.estimate[0], [COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES]: spec.estimate[1] }
      : {}),
    ...(spec.unjudged !== undefined ? { [BUDGET_UNJUDGED]: [...spec.unjudged] } : {}),
    ...(spec.measurement ? { [MEASUREMENT_ATTRIBUTE]: true } : {}),
  };
  const events = (spec.breaches ?? []).map(([metric, severity]) => ({ name: BUDGET_BREACH_EVENT, attributes: { metric, severity }, time: [0, 0] }));
  const duration = [Math.floor(spec.ms / 1000), (spec.ms % 1000) * 1e6];
  return { attributes, duration, events, resource: resourceOf(spec.service) } as unknown as ReadableSpan;
}

const http = (method: string, route: string | undefined, status?: number): Attributes => ({
  [HTTP_REQUEST_METHOD]: method,
  ...(route !== undefined ? { [HTTP_ROUTE]: route } : {}),
  ...(status !== undefined ? { 'http.response.status_code': status } : {}),
});

/** A query (or call) that ended after `of` had ended, as CostSpanProcessor marks it. */
function lateOperation(of: ReadableSpan, type: CostContribution['type']): ReadableSpan {
  const span = { attributes: {}, duration: [0, 0], events: [], resource: of.resource } as unknown as ReadableSpan;
  markLateOperation(span, of, { type } as CostContribution);
  return span;
}

// ---- readers: an in-memory one (OTLP's data model) and a Prometheus endpoint, scraped over HTTP ----

interface Readers {
  /** The metrics the in-memory reader exports now, by name. */
  collect(): Promise<Map<string, MetricData>>;
  /** GET /metrics of the Prometheus reader. */
  scrape(): Promise<string>;
  shutdown(): Promise<void>;
}

async function readersOf(processor: CostMetricsProcessor, temporality = AggregationTemporality.CUMULATIVE): Promise<Readers> {
  const exporter = new InMemoryMetricExporter(temporality);
  const periodic = new PeriodicExportingMetricReader({
    exporter,
    exportIntervalMillis: 3_600_000,
    metricProducers: [processor.metricProducer(exporter.selectAggregationTemporality.bind(exporter))],
  });
  const port = await freePort();
  const prometheus = await new Promise<PrometheusExporter>((resolve, reject) => {
    const reader: PrometheusExporter = new PrometheusExporter({ host: '127.0.0.1', port, metricProducers: [processor.metricProducer()] }, (error) =>
      error ? reject(error) : resolve(reader),
    );
  });
  const provider = new MeterProvider({ resource: resourceFromAttributes({ 'service.name': 'metrics-provider' }), readers: [periodic, prometheus] });
  return {
    async collect() {
      exporter.reset();
      await periodic.forceFlush();
      const [exported] = exporter.getMetrics();
      expect(exported!.scopeMetrics.map((scope) => scope.scope)).toEqual([{ name: '@request-budget/node', version: '' }]);
      return new Map(exported!.scopeMetrics[0]!.metrics.map((metric) => [metric.descriptor.name, metric]));
    },
    async scrape() {
      return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    },
    shutdown: () => provider.shutdown(),
  };
}

/** Lines of a Prometheus text family (its HELP, UNIT, TYPE and samples), in order. */
function family(text: string, name: string): string[] {
  return text
    .split('\n')
    .filter(
      (line) =>
        line.startsWith(`${name}_`) ||
        line.startsWith(`${name}{`) ||
        line.startsWith(`# HELP ${name} `) ||
        line.startsWith(`# UNIT ${name} `) ||
        line.startsWith(`# TYPE ${name} `),
    );
}

const labels = (attributes: Attributes) => Object.values(attributes).join(' ');
const histogram = (metrics: Map<string, MetricData>, name: string) => metrics.get(name) as HistogramMetricData;
const sum = (metrics: Map<string, MetricData>, name: string) => metrics.get(name) as SumMetricData;
/** A histogram's points by label values: [count, sum, min, max, bucket counts]. */
const points = (metric: HistogramMetricData) =>
  metric.dataPoints.map((p) => [labels(p.attributes), p.value.count, p.value.sum, p.value.min, p.value.max, p.value.buckets.counts] as const);

describe('CostMetricsProcessor, cumulative (as Prometheus reads it)', () => {
  const processor = new CostMetricsProcessor({ rules, maxRoutes: 3 });
  let readers: Readers;
  const usersOk = root({
    service: 'svc',
    attributes: http('GET', '/users/:id', 200),
    ms: 12.5,
    queries: 1,
    dbTimeMs: 3.25,
    rows: 10,
    heapDelta: 70_000,
    allocated: 50_000,
    dbBytes: 1_500,
    estimate: [48_000, 1_200],
  });

  beforeAll(async () => {
    readers = await readersOf(processor);
    for (const span of [
      usersOk,
      // A shrinking heap records as no growth.
      root({
        service: 'svc',
        attributes: http('GET', '/users/:id', 201),
        ms: 1500,
        queries: 3,
        dbTimeMs: 40,
        rows: 1000,
        heapDelta: -5,
        enqueued: 2,
        // A driver reported no bytes: no DB bytes figure, and the limit on it unjudged.
        allocated: 300_000,
        estimate: [52_000, 900],
        unjudged: [HEAP_UNJUDGED, DB_BYTES_UNJUDGED],
        breaches: [
          ['db.queries', 'warning'],
          ['duration_ms', 'critical'],
        ],
      }),
      // No rows, so 0 bytes; memory attribution off: no allocation recorded, no estimate published.
      root({ service: 'svc', attributes: http('GET', '/orders', 503), ms: 0.5, queries: 0, dbBytes: 0 }),
      // Another service's same route is a series of its own, and takes the last of the 3 places.
      root({
        service: 'other',
        attributes: http('GET', '/users/:id', 204),
        ms: 7,
        queries: 4,
        breaches: [['db.queries', 'warning']],
        allocated: 5_000_000,
        dbBytes: 70_000,
        estimate: [4_000_000, 250_000],
        unjudged: ['heap.delta_bytes: 2 requests in flight (heapMinConfidence medium; allocatedBytes holds under load)'],
      }),
      // Beyond the cap: the service's `(other)`, with no limits (nor memory estimate: it mixes routes) published.
      root({
        service: 'svc',
        attributes: { [JOB_NAME_ATTRIBUTE]: 'mail.send' },
        ms: 30,
        queries: 6,
        enqueued: 1,
        breaches: [['db.queries', 'critical']],
        estimate: [7_000, 70],
        unjudged: [ALLOCATED_UNJUDGED],
      }),
      // An entry that is not `metric: reason` counts under `(other)`, not as a label of its own.
      root({ service: 'svc', attributes: { [HTTP_METHOD_LEGACY]: 'POST' }, ms: 3, queries: 2, unjudged: ['no separator here'] }),
      // A labelled route keeps its label once the cap is reached; a request without an estimate leaves the last one.
      root({ service: 'svc', attributes: http('GET', '/users/:id', 500), ms: 10, queries: 5, allocated: 4096, dbBytes: 1024, unjudged: [HEAP_UNJUDGED] }),
      // request-budget's own measurement runs are no traffic.
      root({
        service: 'svc',
        attributes: http('GET', '/users/:id', 200),
        ms: 1,
        queries: 1,
        measurement: true,
        allocated: 1,
        dbBytes: 1,
        estimate: [1, 1],
        unjudged: [HEAP_UNJUDGED],
      }),
    ])
      processor.onEnd(span);
    // A span that is no root (no cost record) is not counted.
    processor.onEnd({ attributes: { [HTTP_REQUEST_METHOD]: 'GET' }, duration: [0, 1], events: [], resource: resourceOf('svc') } as unknown as ReadableSpan);
    for (const kind of ['db', 'db', 'http_client'] as const) processor.onEnd(lateOperation(usersOk, kind));
    processor.onEnd(lateOperation(root({ service: 'svc', attributes: http('GET', '/late/:id', 200), ms: 1, queries: 0 }), 'db'));
  });
  afterAll(() => readers.shutdown());

  it('records each (service, route, status_class) histogram exactly: count, sum, min, max and buckets', async () => {
    const metrics = await readers.collect();
    const queries = histogram(metrics, 'request_budget.db.queries');
    expect(queries.dataPointType).toBe(DataPointType.HISTOGRAM);
    expect(queries.aggregationTemporality).toBe(AggregationTemporality.CUMULATIVE);
    expect(queries.descriptor).toMatchObject({ description: 'DB operations per request', unit: '{query}' });
    expect(queries.dataPoints.every((p) => p.value.buckets.boundaries.join() === COUNT_BOUNDS.join())).toBe(true);
    // In the order of each series' first request.
    expect(points(queries)).toEqual([
      ['svc GET /users/:id 2xx', 2, 4, 1, 3, [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
      ['svc GET /orders 5xx', 1, 0, 0, 0, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
      ['other GET /users/:id 2xx', 1, 4, 4, 4, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]],
      ['svc (other) none', 2, 8, 2, 6, [0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]],
      ['svc GET /users/:id 5xx', 1, 5, 5, 5, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]],
    ]);
    const users = (name: string) => points(histogram(metrics, name))[0];
    expect(users('request_budget.request.duration_ms')).toEqual(['svc GET /users/:id 2xx', 2, 1512.5, 12.5, 1500, [0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]]);
    expect(users('request_budget.db.time_ms')).toEqual(['svc GET /users/:id 2xx', 2, 43.25, 3.25, 40, [0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]]);
    expect(users('request_budget.db.rows')).toEqual(['svc GET /users/:id 2xx', 2, 1010, 10, 1000, [0, 0, 1, 0, 1, 0, 0, 0, 0]]);
    expect(users('request_budget.heap.delta_bytes')).toEqual(['svc GET /users/:id 2xx', 2, 70_000, 0, 70_000, [1, 1, 0, 0, 0, 0, 0, 0]]);
    expect(histogram(metrics, 'request_budget.request.duration_ms').dataPoints[0]!.value.buckets.boundaries).toEqual(MS_BOUNDS);
    expect(histogram(metrics, 'request_budget.heap.delta_bytes').dataPoints[0]!.value.buckets.boundaries).toEqual(BYTES_BOUNDS);
    expect([...metrics.keys()]).toEqual([
      'request_budget.limit',
      'request_budget.request.duration_ms',
      'request_budget.db.queries',
      'request_budget.db.time_ms',
      'request_budget.db.rows',
      'request_budget.heap.delta_bytes',
      'request_budget.memory.allocated_bytes',
      'request_budget.db.bytes',
      'request_budget.breaches',
      'request_budget.jobs.enqueued',
      'request_budget.late_operations',
      'request_budget.memory.route_estimate_bytes',
      'request_budget.memory.route_estimate_error_bytes',
      'request_budget.unjudged',
    ]);
  });

  it('records own allocation and DB bytes per request, only where the figure is present', async () => {
    const metrics = await readers.collect();
    const allocated = histogram(metrics, 'request_budget.memory.allocated_bytes');
    expect(allocated.descriptor).toMatchObject({
      description:
        "Bytes each request's own code allocated, of the requests memory attribution measured (a lower bound when a GC inside one is not accounted yet)",
      unit: 'By',
    });
    expect(allocated.dataPoints.every((p) => p.value.buckets.boundaries.join() === ALLOCATED_BOUNDS.join())).toBe(true);
    // GET /orders carried no figure (memory attribution off): no point, though its series has requests.
    expect(points(allocated)).toEqual([
      ['svc GET /users/:id 2xx', 2, 350_000, 50_000, 300_000, [0, 0, 1, 0, 1, 0, 0, 0, 0, 0]],
      ['other GET /users/:id 2xx', 1, 5_000_000, 5_000_000, 5_000_000, [0, 0, 0, 0, 0, 0, 1, 0, 0, 0]],
      ['svc GET /users/:id 5xx', 1, 4096, 4096, 4096, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    ]);
    const dbBytes = histogram(metrics, 'request_budget.db.bytes');
    expect(dbBytes.descriptor).toMatchObject({
      description: 'Wire bytes of result rows per request, of the requests whose DB drivers reported them',
      unit: 'By',
    });
    expect(dbBytes.dataPoints.every((p) => p.value.buckets.boundaries.join() === WIRE_BOUNDS.join())).toBe(true);
    // The 2xx series counts 1 of its 2 requests: the other's driver reported no bytes. 0 bytes is a figure.
    expect(points(dbBytes)).toEqual([
      ['svc GET /users/:id 2xx', 1, 1_500, 1_500, 1_500, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]],
      ['svc GET /orders 5xx', 1, 0, 0, 0, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
      ['other GET /users/:id 2xx', 1, 70_000, 70_000, 70_000, [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]],
      ['svc GET /users/:id 5xx', 1, 1024, 1024, 1024, [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    ]);
  });

  it("publishes each route's last memory estimate and error, and counts unjudged limits by route and metric", async () => {
    const metrics = await readers.collect();
    const gauge = (name: string) => {
      const metric = metrics.get(name)!;
      expect(metric.dataPointType, name).toBe(DataPointType.GAUGE);
      return metric.dataPoints.map((p) => [p.attributes, p.value]);
    };
    // svc GET /users/:id: its second request's (the 5xx one carried none); no point for GET /orders (none
    // carried one) nor for `(other)`.
    expect(gauge('request_budget.memory.route_estimate_bytes')).toEqual([
      [{ service: 'svc', route: 'GET /users/:id' }, 52_000],
      [{ service: 'other', route: 'GET /users/:id' }, 4_000_000],
    ]);
    expect(gauge('request_budget.memory.route_estimate_error_bytes')).toEqual([
      [{ service: 'svc', route: 'GET /users/:id' }, 900],
      [{ service: 'other', route: 'GET /users/:id' }, 250_000],
    ]);
    expect(metrics.get('request_budget.memory.route_estimate_bytes')!.descriptor).toMatchObject({ unit: 'By' });
    expect(sum(metrics, 'request_budget.unjudged')).toMatchObject({ isMonotonic: true, aggregationTemporality: AggregationTemporality.CUMULATIVE });
    expect(sum(metrics, 'request_budget.unjudged').dataPoints.map((p) => [p.attributes, p.value])).toEqual([
      [{ service: 'svc', route: 'GET /users/:id', metric: 'heap.delta_bytes' }, 2],
      [{ service: 'svc', route: 'GET /users/:id', metric: 'db.bytes' }, 1],
      [{ service: 'other', route: 'GET /users/:id', metric: 'heap.delta_bytes' }, 1],
      [{ service: 'svc', route: '(other)', metric: 'memory.allocated_bytes' }, 1],
      [{ service: 'svc', route: '(other)', metric: '(other)' }, 1],
    ]);
  });

  it('counts breaches, enqueued jobs and late operations by route, and publishes the labelled routes’ limits', async () => {
    const metrics = await readers.collect();
    const values = (name: string) => sum(metrics, name).dataPoints.map((p) => [p.attributes, p.value]);
    expect(sum(metrics, 'request_budget.breaches')).toMatchObject({
      dataPointType: DataPointType.SUM,
      isMonotonic: true,
      aggregationTemporality: AggregationTemporality.CUMULATIVE,
    });
    expect(values('request_budget.breaches')).toEqual([
      [{ service: 'svc', route: 'GET /users/:id', metric: 'db.queries', severity: 'warning' }, 1],
      [{ service: 'svc', route: 'GET /users/:id', metric: 'duration_ms', severity: 'critical' }, 1],
      [{ service: 'other', route: 'GET /users/:id', metric: 'db.queries', severity: 'warning' }, 1],
      [{ service: 'svc', route: '(other)', metric: 'db.queries', severity: 'critical' }, 1],
    ]);
    expect(values('request_budget.jobs.enqueued')).toEqual([
      [{ service: 'svc', route: 'GET /users/:id' }, 2],
      [{ service: 'svc', route: '(other)' }, 1],
    ]);
    expect(values('request_budget.late_operations')).toEqual([
      [{ service: 'svc', route: 'GET /users/:id', kind: 'db' }, 2],
      [{ service: 'svc', route: 'GET /users/:id', kind: 'http_client' }, 1],
      [{ service: 'svc', route: '(other)', kind: 'db' }, 1],
    ]);
    expect(metrics.get('request_budget.limit')!.dataPointType).toBe(DataPointType.GAUGE);
    expect(metrics.get('request_budget.limit')!.dataPoints.map((p) => [p.attributes, p.value])).toEqual([
      [{ service: 'svc', route: 'GET /users/:id', metric: 'db.queries' }, 2],
      [{ service: 'svc', route: 'GET /users/:id', metric: 'duration_ms' }, 1000],
      [{ service: 'svc', route: 'GET /orders', metric: 'duration_ms' }, 1000],
      [{ service: 'other', route: 'GET /users/:id', metric: 'db.queries' }, 2],
      [{ service: 'other', route: 'GET /users/:id', metric: 'duration_ms' }, 1000],
    ]);
  });

  it('serves the same on the Prometheus endpoint: names, HELP, UNIT, TYPE, labels and cumulative buckets', async () => {
    const text = await readers.scrape();
    const users = `service="svc",route="GET /users/:id",status_class="2xx",${SCOPE}`;
    expect(family(text, 'request_budget_db_queries').slice(0, 18)).toEqual([
      '# HELP request_budget_db_queries DB operations per request',
      '# UNIT request_budget_db_queries {query}',
      '# TYPE request_budget_db_queries histogram',
      `request_budget_db_queries_count{${users}} 2`,
      `request_budget_db_queries_sum{${users}} 4`,
      ...[0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2].map((n, i) => `request_budget_db_queries_bucket{${users},le="${COUNT_BOUNDS[i] ?? '+Inf'}"} ${n}`),
    ]);
    const series = (name: string) =>
      family(text, name)
        .filter((line) => !line.startsWith('#') && !line.includes('_bucket{'))
        .map((line) => line.replace(`,${SCOPE}`, ''));
    expect(series('request_budget_request_duration_ms')).toEqual([
      'request_budget_request_duration_ms_count{service="svc",route="GET /users/:id",status_class="2xx"} 2',
      'request_budget_request_duration_ms_sum{service="svc",route="GET /users/:id",status_class="2xx"} 1512.5',
      'request_budget_request_duration_ms_count{service="svc",route="GET /orders",status_class="5xx"} 1',
      'request_budget_request_duration_ms_sum{service="svc",route="GET /orders",status_class="5xx"} 0.5',
      'request_budget_request_duration_ms_count{service="other",route="GET /users/:id",status_class="2xx"} 1',
      'request_budget_request_duration_ms_sum{service="other",route="GET /users/:id",status_class="2xx"} 7',
      'request_budget_request_duration_ms_count{service="svc",route="(other)",status_class="none"} 2',
      'request_budget_request_duration_ms_sum{service="svc",route="(other)",status_class="none"} 33',
      'request_budget_request_duration_ms_count{service="svc",route="GET /users/:id",status_class="5xx"} 1',
      'request_budget_request_duration_ms_sum{service="svc",route="GET /users/:id",status_class="5xx"} 10',
    ]);
    expect(family(text, 'request_budget_heap_delta_bytes').slice(0, 3)).toEqual([
      '# HELP request_budget_heap_delta_bytes Heap growth per request (0 when it shrank)',
      '# UNIT request_budget_heap_delta_bytes By',
      '# TYPE request_budget_heap_delta_bytes histogram',
    ]);
    expect(family(text, 'request_budget_breaches_total')).toEqual([
      '# HELP request_budget_breaches_total Budget limits exceeded, by route, metric and severity',
      '# TYPE request_budget_breaches_total counter',
      `request_budget_breaches_total{service="svc",route="GET /users/:id",metric="db.queries",severity="warning",${SCOPE}} 1`,
      `request_budget_breaches_total{service="svc",route="GET /users/:id",metric="duration_ms",severity="critical",${SCOPE}} 1`,
      `request_budget_breaches_total{service="other",route="GET /users/:id",metric="db.queries",severity="warning",${SCOPE}} 1`,
      `request_budget_breaches_total{service="svc",route="(other)",metric="db.queries",severity="critical",${SCOPE}} 1`,
    ]);
    expect(family(text, 'request_budget_jobs_enqueued_total').slice(0, 3)).toEqual([
      '# HELP request_budget_jobs_enqueued_total Jobs and messages put on a queue, by the route (or job) that enqueued them',
      '# UNIT request_budget_jobs_enqueued_total {job}',
      '# TYPE request_budget_jobs_enqueued_total counter',
    ]);
    expect(series('request_budget_late_operations_total')).toEqual([
      'request_budget_late_operations_total{service="svc",route="GET /users/:id",kind="db"} 2',
      'request_budget_late_operations_total{service="svc",route="GET /users/:id",kind="http_client"} 1',
      'request_budget_late_operations_total{service="svc",route="(other)",kind="db"} 1',
    ]);
    expect(family(text, 'request_budget_memory_allocated_bytes').slice(0, 3)).toEqual([
      "# HELP request_budget_memory_allocated_bytes Bytes each request's own code allocated, of the requests memory attribution measured (a lower bound when a GC inside one is not accounted yet)",
      '# UNIT request_budget_memory_allocated_bytes By',
      '# TYPE request_budget_memory_allocated_bytes histogram',
    ]);
    expect(series('request_budget_memory_allocated_bytes')).toEqual([
      'request_budget_memory_allocated_bytes_count{service="svc",route="GET /users/:id",status_class="2xx"} 2',
      'request_budget_memory_allocated_bytes_sum{service="svc",route="GET /users/:id",status_class="2xx"} 350000',
      'request_budget_memory_allocated_bytes_count{service="other",route="GET /users/:id",status_class="2xx"} 1',
      'request_budget_memory_allocated_bytes_sum{service="other",route="GET /users/:id",status_class="2xx"} 5000000',
      'request_budget_memory_allocated_bytes_count{service="svc",route="GET /users/:id",status_class="5xx"} 1',
      'request_budget_memory_allocated_bytes_sum{service="svc",route="GET /users/:id",status_class="5xx"} 4096',
    ]);
    const orders = `service="svc",route="GET /orders",status_class="5xx",${SCOPE}`;
    expect(family(text, 'request_budget_db_bytes').filter((line) => line.startsWith('#') || line.includes(orders))).toEqual([
      '# HELP request_budget_db_bytes Wire bytes of result rows per request, of the requests whose DB drivers reported them',
      '# UNIT request_budget_db_bytes By',
      '# TYPE request_budget_db_bytes histogram',
      `request_budget_db_bytes_count{${orders}} 1`,
      `request_budget_db_bytes_sum{${orders}} 0`,
      ...WIRE_BOUNDS.map((bound) => `request_budget_db_bytes_bucket{${orders},le="${bound}"} 1`),
      `request_budget_db_bytes_bucket{${orders},le="+Inf"} 1`,
    ]);
    expect(series('request_budget_db_bytes').filter((line) => line.includes('_count{'))).toEqual([
      'request_budget_db_bytes_count{service="svc",route="GET /users/:id",status_class="2xx"} 1',
      'request_budget_db_bytes_count{service="svc",route="GET /orders",status_class="5xx"} 1',
      'request_budget_db_bytes_count{service="other",route="GET /users/:id",status_class="2xx"} 1',
      'request_budget_db_bytes_count{service="svc",route="GET /users/:id",status_class="5xx"} 1',
    ]);
    expect(family(text, 'request_budget_memory_route_estimate_bytes')).toEqual([
      "# HELP request_budget_memory_route_estimate_bytes The route's mean bytes allocated per request under load, as the last of its requests to carry one had it",
      '# UNIT request_budget_memory_route_estimate_bytes By',
      '# TYPE request_budget_memory_route_estimate_bytes gauge',
      `request_budget_memory_route_estimate_bytes{service="svc",route="GET /users/:id",${SCOPE}} 52000`,
      `request_budget_memory_route_estimate_bytes{service="other",route="GET /users/:id",${SCOPE}} 4000000`,
    ]);
    expect(family(text, 'request_budget_memory_route_estimate_error_bytes')).toEqual([
      "# HELP request_budget_memory_route_estimate_error_bytes Standard error of the route's memory estimate, as the last of its requests to carry one had it",
      '# UNIT request_budget_memory_route_estimate_error_bytes By',
      '# TYPE request_budget_memory_route_estimate_error_bytes gauge',
      `request_budget_memory_route_estimate_error_bytes{service="svc",route="GET /users/:id",${SCOPE}} 900`,
      `request_budget_memory_route_estimate_error_bytes{service="other",route="GET /users/:id",${SCOPE}} 250000`,
    ]);
    expect(family(text, 'request_budget_unjudged_total')).toEqual([
      '# HELP request_budget_unjudged_total Budget limits that could not be judged on a request, by route and metric (one per entry of budget.unjudged)',
      '# TYPE request_budget_unjudged_total counter',
      `request_budget_unjudged_total{service="svc",route="GET /users/:id",metric="heap.delta_bytes",${SCOPE}} 2`,
      `request_budget_unjudged_total{service="svc",route="GET /users/:id",metric="db.bytes",${SCOPE}} 1`,
      `request_budget_unjudged_total{service="other",route="GET /users/:id",metric="heap.delta_bytes",${SCOPE}} 1`,
      `request_budget_unjudged_total{service="svc",route="(other)",metric="memory.allocated_bytes",${SCOPE}} 1`,
      `request_budget_unjudged_total{service="svc",route="(other)",metric="(other)",${SCOPE}} 1`,
    ]);
    expect(family(text, 'request_budget_limit').slice(0, 3)).toEqual([
      '# HELP request_budget_limit Budget limit that applies to the route, by metric (from the budget file)',
      '# TYPE request_budget_limit gauge',
      `request_budget_limit{service="svc",route="GET /users/:id",metric="db.queries",${SCOPE}} 2`,
    ]);
  });

  it('keeps totals across collections, each series from its first request', async () => {
    const before = histogram(await readers.collect(), 'request_budget.db.queries').dataPoints[0]!;
    processor.onEnd(root({ service: 'svc', attributes: http('GET', '/users/:id', 299), ms: 2, queries: 1000 }));
    const after = histogram(await readers.collect(), 'request_budget.db.queries').dataPoints[0]!;
    expect([after.value.count, after.value.sum, after.value.max, after.value.buckets.counts.at(-2)]).toEqual([3, 1004, 1000, 1]);
    expect(after.startTime).toEqual(before.startTime);
  });
});

describe('CostMetricsProcessor, delta (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta)', () => {
  it('reports what changed since the last collection, with that interval’s sum, min and max', async () => {
    const processor = new CostMetricsProcessor({ rules });
    const readers = await readersOf(processor, AggregationTemporality.DELTA);
    try {
      processor.onEnd(
        root({
          service: 'svc',
          attributes: http('GET', '/users/:id', 200),
          ms: 1,
          queries: 1,
          breaches: [['db.queries', 'warning']],
          dbBytes: 100,
          unjudged: [HEAP_UNJUDGED],
        }),
      );
      processor.onEnd(root({ service: 'svc', attributes: http('GET', '/users/:id', 200), ms: 1, queries: 3, dbBytes: 300, estimate: [2048, 16] }));
      processor.onEnd(root({ service: 'svc', attributes: http('GET', '/orders', 200), ms: 1, queries: 0 }));
      const first = await readers.collect();
      expect(points(histogram(first, 'request_budget.db.queries'))).toEqual([
        ['svc GET /users/:id 2xx', 2, 4, 1, 3, [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
        ['svc GET /orders 2xx', 1, 0, 0, 0, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
      ]);
      expect(histogram(first, 'request_budget.db.queries').aggregationTemporality).toBe(AggregationTemporality.DELTA);
      expect(points(histogram(first, 'request_budget.db.bytes'))).toEqual([['svc GET /users/:id 2xx', 2, 400, 100, 300, [0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]]]);
      expect(sum(first, 'request_budget.unjudged').dataPoints.map((p) => [p.attributes, p.value])).toEqual([
        [{ service: 'svc', route: 'GET /users/:id', metric: 'heap.delta_bytes' }, 1],
      ]);

      processor.onEnd(root({ service: 'svc', attributes: http('GET', '/users/:id', 200), ms: 1, queries: 2, enqueued: 3 }));
      const second = await readers.collect();
      // A request in the interval, but none with DB bytes; no limit left unjudged since.
      expect(second.has('request_budget.db.bytes')).toBe(false);
      expect(second.has('request_budget.unjudged')).toBe(false);
      // A gauge is its last value, whatever the interval.
      expect(second.get('request_budget.memory.route_estimate_bytes')!.dataPoints.map((p) => p.value)).toEqual([2048]);
      const queries = histogram(second, 'request_budget.db.queries');
      expect(points(queries)).toEqual([['svc GET /users/:id 2xx', 1, 2, 2, 2, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]]);
      // The interval starts where the last one ended.
      expect(queries.dataPoints[0]!.startTime).toEqual(histogram(first, 'request_budget.db.queries').dataPoints[0]!.endTime);
      expect(second.has('request_budget.breaches')).toBe(false);
      expect(sum(second, 'request_budget.jobs.enqueued').dataPoints.map((p) => [p.attributes, p.value])).toEqual([
        [{ service: 'svc', route: 'GET /users/:id' }, 3],
      ]);
      expect(second.get('request_budget.limit')!.dataPoints).toHaveLength(3);

      // Prometheus, on the same processor, still reads the totals.
      expect(family(await readers.scrape(), 'request_budget_db_queries')).toContain(
        `request_budget_db_queries_count{service="svc",route="GET /users/:id",status_class="2xx",${SCOPE}} 3`,
      );
    } finally {
      await readers.shutdown();
    }
  });
});

describe('unjudged limits: the metric label is bounded', () => {
  it('takes the text before the first ": ", up to 64 characters and 16 metrics a route; the rest is (other)', async () => {
    const processor = new CostMetricsProcessor();
    const readers = await readersOf(processor);
    const unjudged = (route: string, entries: unknown) => {
      const span = root({ service: 'svc', attributes: http('GET', route, 200), ms: 1, queries: 0 });
      span.attributes[BUDGET_UNJUDGED] = entries as string[];
      processor.onEnd(span);
    };
    try {
      // 20 entries on one request: the first 16 are counted.
      unjudged(
        '/many',
        Array.from({ length: 20 }, (_, i) => `m${i}: reason ${i}`),
      );
      // A 17th metric is past the route's cap; a known one still counts under its name.
      unjudged('/many', ['m16: r', 'm0: r']);
      // `db.bytes` does not take `db.bytes_total`; 64 characters make a label, 65 do not; a non-string entry is skipped.
      unjudged('/names', ['db.bytes: r', 'db.bytes_total: r', `${'y'.repeat(64)}: r`, `${'x'.repeat(65)}: r`, ': no metric', 42, 'db.bytes: again']);
      // Not an array: not budget.unjudged as core writes it.
      unjudged('/names', 'db.bytes: r');
      const cells = sum(await readers.collect(), 'request_budget.unjudged').dataPoints.map((p) => `${p.attributes.route} ${p.attributes.metric} ${p.value}`);
      expect(cells).toEqual([
        ...Array.from({ length: 16 }, (_, i) => `GET /many m${i} ${i === 0 ? 2 : 1}`),
        'GET /many (other) 1',
        'GET /names db.bytes 2',
        'GET /names db.bytes_total 1',
        `GET /names ${'y'.repeat(64)} 1`,
        'GET /names (other) 2',
      ]);
    } finally {
      await readers.shutdown();
    }
  });
});

describe('route labels', () => {
  it('are core’s routeOf labels, whatever raw values lead to them: one series per label', async () => {
    const processor = new CostMetricsProcessor({ maxRoutes: 20 });
    const readers = await readersOf(processor);
    const cases: Attributes[] = [
      http('GET', '/a'),
      { [HTTP_METHOD_LEGACY]: 'POST' },
      { [HTTP_REQUEST_METHOD]: 'POST', [HTTP_METHOD_LEGACY]: 'PUT' },
      {},
      { [JOB_NAME_ATTRIBUTE]: 'mail.send', ...http('GET', '/x') },
      { [MESSAGING_DESTINATION_NAME]: 'orders' },
      { [MESSAGING_DESTINATION_NAME]: 'orders', [HTTP_REQUEST_METHOD]: 'GET' },
      { [JOB_NAME_ATTRIBUTE]: '', [MESSAGING_DESTINATION_NAME]: 'orders' },
      { [HTTP_REQUEST_METHOD]: '', [HTTP_ROUTE]: '' },
      { [HTTP_REQUEST_METHOD]: 5 },
      // Raw values that make the same label as others above.
      { [HTTP_REQUEST_METHOD]: 'ANY', [HTTP_ROUTE]: '(unrouted)' },
      { [HTTP_REQUEST_METHOD]: 'GET', [HTTP_ROUTE]: '(unrouted)' },
    ];
    try {
      for (const attributes of cases) processor.onEnd(root({ service: 'svc', attributes, ms: 1, queries: 1 }));
      const counts = histogram(await readers.collect(), 'request_budget.db.queries').dataPoints.map((p) => [p.attributes.route, p.value.count]);
      const expected = new Map<string, number>();
      for (const attributes of cases) expected.set(routeOf(attributes).label, (expected.get(routeOf(attributes).label) ?? 0) + 1);
      expect(counts).toEqual([...expected]);
      expect(counts).toEqual([
        ['GET /a', 1],
        ['POST (unrouted)', 2],
        ['ANY (unrouted)', 4],
        ['job mail.send', 1],
        ['job orders', 2],
        ['GET (unrouted)', 2],
      ]);
    } finally {
      await readers.shutdown();
    }
  });
});

describe('CostMetricsProcessor behind real processors', () => {
  const metricsProcessor = new CostMetricsProcessor({ rules, maxRoutes: 3 });
  let readers: Readers;
  /** Two services' tracer providers feeding one metrics processor: their spans differ only by resource. */
  const tracerOf = (service: string, processors: SpanProcessor[]) =>
    new TracerProvider({ resource: resourceFromAttributes({ 'service.name': service }), spanProcessors: processors }).getTracer('test');
  const tracer = tracerOf('svc', [new CostSpanProcessor(), new BudgetSpanProcessor({ rules, serviceName: 'svc' }), metricsProcessor]);
  const otherTracer = tracerOf('other', [new CostSpanProcessor(), new BudgetSpanProcessor({ rules, serviceName: 'other' }), metricsProcessor]);

  beforeAll(async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    readers = await readersOf(metricsProcessor);
  });
  afterAll(async () => {
    await readers.shutdown();
    context.disable();
  });

  function request(route: string, queries: number, status = 200, on = tracer): void {
    const span = on.startSpan(`GET ${route}`, {
      kind: SpanKind.SERVER,
      attributes: { 'http.request.method': 'GET', 'http.route': route, 'http.response.status_code': status },
    });
    context.with(trace.setSpan(context.active(), span), () => {
      for (let i = 0; i < queries; i += 1)
        on.startSpan('q', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': `SELECT ${i}` } }).end();
    });
    span.end();
  }

  it('records the cost records CostSpanProcessor writes and the breaches BudgetSpanProcessor judges', async () => {
    request('/users/:id', 1);
    request('/users/:id', 3, 200);
    request('/orders', 0, 503);
    request('/users/:id', 4, 200, otherTracer);
    request('/third', 0);
    const metrics = await readers.collect();
    const queries = histogram(metrics, 'request_budget.db.queries');
    expect(queries.dataPoints.map((p) => [labels(p.attributes), p.value.count, p.value.sum])).toEqual([
      ['svc GET /users/:id 2xx', 2, 4],
      ['svc GET /orders 5xx', 1, 0],
      ['other GET /users/:id 2xx', 1, 4],
      ['svc (other) 2xx', 1, 0],
    ]);
    expect(sum(metrics, 'request_budget.breaches').dataPoints.map((p) => [p.attributes, p.value])).toEqual([
      [{ service: 'svc', route: 'GET /users/:id', metric: 'db.queries', severity: 'warning' }, 1],
      [{ service: 'other', route: 'GET /users/:id', metric: 'db.queries', severity: 'warning' }, 1],
    ]);
  });
});
