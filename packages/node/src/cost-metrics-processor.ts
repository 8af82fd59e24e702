/**
 * CostMetricsProcessor: turns each finished request's (or job's) cost record into OpenTelemetry
 * metrics per route, so Prometheus can chart and alert on them: histograms of queries, DB time,
 * rows, heap growth, own allocation, DB result bytes and duration, counters of budget breaches
 * and of limits that could not be judged, a gauge of each route's budget limits (for the budget
 * table and the alerts' annotations) and gauges of its memory estimate under load.
 *
 * Labels are bounded: `service` is the span's service.name (services scraped under one Prometheus
 * job stay apart), `route` is the method and route template (`GET /users/:id`), `job NAME` or
 * `METHOD (unrouted)`, never a raw URL, and at most `maxRoutes` distinct routes are labelled;
 * the rest share the route `(other)`. `status_class` is one of 1xx…5xx or `none`. `metric` of the
 * unjudged counter is the metric name core writes (at most 16 per route, 64 characters each).
 *
 * Recording costs a lookup and a few additions per request (cost-metrics-state.ts): the metrics
 * reach the readers through metricProducer(), which each reader is given when it is made
 * (meter-provider.ts), rather than through SDK instruments, whose record() hashes the label set
 * of every value.
 */
import type { AggregationTemporalitySelector, MetricProducer } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace';
import * as core from '@request-budget/core';
import type { BudgetRuleSet } from '@request-budget/core';
import { HISTOGRAMS } from './cost-metric-definitions';
import { CostMetricsProducer } from './cost-metrics-producer';
import { CostMetricsState, ESTIMATE, ESTIMATE_ERROR, statusClassIndex } from './cost-metrics-state';
import { lateOperationOf, type LateOperation } from './late-operations';
import { OTHER_ROUTE, RouteTable } from './route-table';
import { UNKNOWN_SERVICE } from './service-label';

export { METRIC_NAMES } from './cost-metric-definitions';
export { OTHER_ROUTE } from './route-table';

// Read once: compiled to CommonJS, each use of a re-exported constant calls a getter.
const {
  BUDGET_BREACH_EVENT,
  BUDGET_UNJUDGED,
  COST_DB_BYTES,
  COST_DB_QUERIES,
  COST_DB_ROWS,
  COST_DB_TIME_MS,
  COST_HEAP_DELTA_BYTES,
  COST_JOBS_ENQUEUED,
  COST_MEMORY_ALLOCATED_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES,
  MEASUREMENT_ATTRIBUTE,
} = core;
/** `budget.unjudged` entries counted per request at most: core writes one per byte or heap limit. */
const MAX_UNJUDGED_ENTRIES = 16;
/** Not in core's attribute names: the HTTP semantic conventions' own. */
const HTTP_RESPONSE_STATUS_CODE = 'http.response.status_code';

export interface CostMetricsOptions {
  /** Budget rules, to publish each route's limits; none when running without budgets. */
  readonly rules?: BudgetRuleSet;
  /** Distinct routes (service and route pairs) labelled before the rest become `(other)`. @default 500 */
  readonly maxRoutes?: number;
  /** `service` label of spans whose resource has no service.name. @default 'unknown_service:node' */
  readonly defaultService?: string;
}

export class CostMetricsProcessor implements SpanProcessor {
  private readonly state = new CostMetricsState();
  private readonly routes: RouteTable;
  /** One request's histogram values, in HISTOGRAMS order (duration, queries, DB time, rows, heap growth, allocated, DB bytes). */
  private readonly request = new Float64Array(HISTOGRAMS.length);

  constructor(options: CostMetricsOptions = {}) {
    this.routes = new RouteTable({
      state: this.state,
      maxRoutes: options.maxRoutes ?? 500,
      defaultService: options.defaultService ?? UNKNOWN_SERVICE,
      rules: options.rules,
    });
  }

  /**
   * The cost metrics for one metric reader: give it in the reader's `metricProducers` option
   * (one producer per reader). `temporality` is the reader's exporter's selector; cumulative
   * when absent, as Prometheus reads them.
   */
  metricProducer(temporality?: AggregationTemporalitySelector): MetricProducer {
    return new CostMetricsProducer(this.state, temporality);
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    try {
      const late = lateOperationOf(span);
      if (late !== undefined) return this.countLate(late);
      const a = span.attributes;
      const queries = a[COST_DB_QUERIES];
      if (queries === undefined || a[MEASUREMENT_ATTRIBUTE] === true) return;
      const route = this.routes.routeOf(a, span.resource);
      // Written into one array, not passed as arguments: no value boxed (cost-metrics-state.ts).
      const request = this.request;
      const duration = span.duration;
      request[0] = duration[0] * 1e3 + duration[1] / 1e6; // hrTimeToMilliseconds, whose returned double would be boxed
      request[1] = Number(queries);
      request[2] = Number(a[COST_DB_TIME_MS] ?? 0);
      request[3] = Number(a[COST_DB_ROWS] ?? 0);
      // Histograms take no negative values: a shrinking heap (a GC ran) records as no growth.
      request[4] = Math.max(0, Number(a[COST_HEAP_DELTA_BYTES] ?? 0));
      // Absent (NaN, not recorded): a request memory attribution did not measure (off, or outside its
      // sampling windows); a driver that did not report its result bytes.
      request[5] = Number(a[COST_MEMORY_ALLOCATED_BYTES]);
      request[6] = Number(a[COST_DB_BYTES]);
      this.state.record(route, statusClassIndex(a[HTTP_RESPONSE_STATUS_CODE]), request);
      // A route's own estimate; `(other)` mixes routes, whose last estimate would stand for none of them.
      const estimate = a[COST_MEMORY_ROUTE_ESTIMATE_BYTES];
      if (estimate !== undefined && route.route !== OTHER_ROUTE) {
        route.memoryEstimate[ESTIMATE] = Number(estimate);
        route.memoryEstimate[ESTIMATE_ERROR] = Number(a[COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES]);
      }
      const unjudged = a[BUDGET_UNJUDGED];
      if (Array.isArray(unjudged)) {
        for (let i = 0; i < unjudged.length && i < MAX_UNJUDGED_ENTRIES; i += 1) {
          const entry: unknown = unjudged[i];
          if (typeof entry === 'string') this.state.countUnjudged(route, entry);
        }
      }
      const enqueued = Number(a[COST_JOBS_ENQUEUED] ?? 0);
      if (enqueued > 0) this.state.addJobsEnqueued(route, enqueued);
      const events = span.events;
      for (let i = 0; i < events.length; i += 1) {
        const event = events[i];
        if (event.name === BUDGET_BREACH_EVENT) this.state.countBreach(route, String(event.attributes?.metric), String(event.attributes?.severity));
      }
    } catch {
      // Metrics are a view of the spans; a failure here must not reach span.end().
    }
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }

  private countLate(late: LateOperation): void {
    if (late.root.attributes[MEASUREMENT_ATTRIBUTE] === true) return;
    this.state.countLateOperation(this.routes.routeOf(late.root.attributes, late.root.resource), late.contribution.type);
  }
}
