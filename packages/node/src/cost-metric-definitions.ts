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
};

const describe = (name: string, description: string, unit = ''): MetricDescriptor => ({ name, description, unit, valueType: ValueType.DOUBLE });

/** The per-request histograms, in the order HistogramSeries.record takes their values. */
export const HISTOGRAMS: readonly HistogramDefinition[] = [
  { descriptor: describe(METRIC_NAMES.duration, 'Request (or job) duration', 'ms'), boundaries: BUCKETS.ms },
  { descriptor: describe(METRIC_NAMES.queries, 'DB operations per request', '{query}'), boundaries: BUCKETS.count },
  { descriptor: describe(METRIC_NAMES.dbTime, 'Total DB time per request', 'ms'), boundaries: BUCKETS.ms },
  { descriptor: describe(METRIC_NAMES.rows, 'Rows returned per request', '{row}'), boundaries: BUCKETS.rows },
  { descriptor: describe(METRIC_NAMES.heapDelta, 'Heap growth per request (0 when it shrank)', 'By'), boundaries: BUCKETS.bytes },
];

/** Monotonic counters, by the label sets of their cells. */
export const COUNTERS = {
  breaches: describe(METRIC_NAMES.breaches, 'Budget limits exceeded, by route, metric and severity'),
  jobsEnqueued: describe(METRIC_NAMES.jobsEnqueued, 'Jobs and messages put on a queue, by the route (or job) that enqueued them', '{job}'),
  lateOperations: describe(
    METRIC_NAMES.lateOperations,
    "Queries (kind db) and outgoing HTTP calls (kind http_client) that ended after their request's response, so are in no cost record, by route",
  ),
} as const;

export const LIMIT_GAUGE = describe(METRIC_NAMES.limit, 'Budget limit that applies to the route, by metric (from the budget file)');
