/**
 * The cost metrics as the readers see them: names, descriptions, units, bucket boundaries and
 * scope. The dashboards, the Prometheus rules and the alerts depend on every one of these, so
 * they are the same as when the metrics were OpenTelemetry SDK instruments.
 */
import { ValueType } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { MetricDescriptor } from '@opentelemetry/sdk-metrics';

/** Metric names, as OpenTelemetry instruments (Prometheus replaces the dots with underscores). */
export const METRIC_NAMES = {
  duration: 'request_budget.request.duration_ms',
  queries: 'request_budget.db.queries',
  dbTime: 'request_budget.db.time_ms',
  rows: 'request_budget.db.rows',
  heapDelta: 'request_budget.heap.delta_bytes',
  /** Bytes each measured request's own code allocated (cost.memory.allocated_bytes). */
  allocated: 'request_budget.memory.allocated_bytes',
  /** Wire bytes of each request's result rows (cost.db.bytes), where its drivers reported them. */
  dbBytes: 'request_budget.db.bytes',
  /** The route's estimate of memory per request under load, and its standard error: the last values its spans carried. */
  memoryEstimate: 'request_budget.memory.route_estimate_bytes',
  memoryEstimateError: 'request_budget.memory.route_estimate_error_bytes',
  /** Budget limits that could not be judged (budget.unjudged), by route and metric. */
  unjudged: 'request_budget.unjudged',
  breaches: 'request_budget.breaches',
  limit: 'request_budget.limit',
  /** Jobs and messages put on a queue, by the route (or job) that enqueued them. */
  jobsEnqueued: 'request_budget.jobs.enqueued',
  /** Queries and outgoing HTTP calls that ended after their request's response, by route and kind. */
  lateOperations: 'request_budget.late_operations',
} as const;

/** The scope of the cost metrics (Prometheus: `otel_scope_name`), as the meter `@request-budget/node` had it. */
export const COST_METRICS_SCOPE: InstrumentationScope = { name: '@request-budget/node', version: '' };

export interface HistogramDefinition {
  readonly descriptor: MetricDescriptor;
  /** Inclusive upper bounds, ascending; one more bucket counts what lies above the last. */
  readonly boundaries: number[];
}

const BUCKETS = {
  count: [0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000],
  ms: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
  rows: [0, 1, 10, 100, 1000, 10000, 100000, 1000000],
  bytes: [65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456],
  /** From 4 KiB, by fours: a small request allocates tens of KiB. */
  allocated: [4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456],
  /** 0 apart (no rows), then from 1 KiB by fours: a row of a few columns is tens of bytes on the wire. */
  wire: [0, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864],
};

const describe = (name: string, description: string, unit = ''): MetricDescriptor => ({ name, description, unit, valueType: ValueType.DOUBLE });

/** The per-request histograms, in the order HistogramSeries.record takes their values. */
export const HISTOGRAMS: readonly HistogramDefinition[] = [
  { descriptor: describe(METRIC_NAMES.duration, 'Request (or job) duration', 'ms'), boundaries: BUCKETS.ms },
  { descriptor: describe(METRIC_NAMES.queries, 'DB operations per request', '{query}'), boundaries: BUCKETS.count },
  { descriptor: describe(METRIC_NAMES.dbTime, 'Total DB time per request', 'ms'), boundaries: BUCKETS.ms },
  { descriptor: describe(METRIC_NAMES.rows, 'Rows returned per request', '{row}'), boundaries: BUCKETS.rows },
  { descriptor: describe(METRIC_NAMES.heapDelta, 'Heap growth per request (0 when it shrank)', 'By'), boundaries: BUCKETS.bytes },
  // These two are recorded only for the requests that carry the figure (memory attribution measures
  // requests of its sampling windows; not every driver reports result bytes): their count is those
  // requests', not every request's.
  {
    descriptor: describe(
      METRIC_NAMES.allocated,
      "Bytes each request's own code allocated, of the requests memory attribution measured (a lower bound when a GC inside one is not accounted yet)",
      'By',
    ),
    boundaries: BUCKETS.allocated,
  },
  {
    descriptor: describe(METRIC_NAMES.dbBytes, 'Wire bytes of result rows per request, of the requests whose DB drivers reported them', 'By'),
    boundaries: BUCKETS.wire,
  },
];

/** Monotonic counters, by the label sets of their cells. */
export const COUNTERS = {
  breaches: describe(METRIC_NAMES.breaches, 'Budget limits exceeded, by route, metric and severity'),
  jobsEnqueued: describe(METRIC_NAMES.jobsEnqueued, 'Jobs and messages put on a queue, by the route (or job) that enqueued them', '{job}'),
  lateOperations: describe(
    METRIC_NAMES.lateOperations,
    "Queries (kind db) and outgoing HTTP calls (kind http_client) that ended after their request's response, so are in no cost record, by route",
  ),
  unjudged: describe(METRIC_NAMES.unjudged, 'Budget limits that could not be judged on a request, by route and metric (one per entry of budget.unjudged)'),
} as const;

export const LIMIT_GAUGE = describe(METRIC_NAMES.limit, 'Budget limit that applies to the route, by metric (from the budget file)');

/** The memory estimate gauges, in the order of a route's memoryEstimate values. */
export const MEMORY_ESTIMATE_GAUGES = [
  describe(METRIC_NAMES.memoryEstimate, "The route's mean bytes allocated per request under load, as the last of its requests to carry one had it", 'By'),
  describe(METRIC_NAMES.memoryEstimateError, "Standard error of the route's memory estimate, as the last of its requests to carry one had it", 'By'),
] as const;
