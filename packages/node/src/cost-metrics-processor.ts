/**
 * CostMetricsProcessor: turns each finished request's (or job's) cost record into OpenTelemetry
 * metrics per route, so Prometheus can chart and alert on them: histograms of queries, DB time,
 * rows, heap growth and duration, a counter of budget breaches, and a gauge of each route's
 * budget limits (for the budget table and the alerts' annotations).
 *
 * Labels are bounded: `service` is the span's service.name (services scraped under one Prometheus
 * job stay apart), `route` is the method and route template (`GET /users/:id`), `job NAME` or
 * `METHOD (unrouted)`, never a raw URL, and at most `maxRoutes` distinct routes are labelled;
 * the rest share the route `(other)`. `status_class` is one of 1xx…5xx or `none`.
 */
import { metrics, type Counter, type Histogram, type Meter, type ObservableResult } from '@opentelemetry/api';
import { hrTimeToMilliseconds } from '@opentelemetry/core';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace';
import type { Resource } from '@opentelemetry/resources';
import {
  BUDGET_BREACH_EVENT,
  BUDGET_METRICS,
  COST_DB_QUERIES,
  COST_DB_ROWS,
  COST_DB_TIME_MS,
  COST_HEAP_DELTA_BYTES,
  COST_JOBS_ENQUEUED,
  LIMIT_NAMES,
  routeOf,
  type BudgetRuleSet,
} from '@request-budget/core';
import { MEASUREMENT_ATTRIBUTE } from './budget-span-processor';
import { lateOperationOf, type LateOperation } from './late-operations';
import { UNKNOWN_SERVICE, serviceNameOf } from './service-label';

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
  /** Queries and outgoing calls that ended after their request's response, by route and kind. */
  lateOperations: 'request_budget.late_operations',
} as const;

/** Route label shared by every route beyond the cap. */
export const OTHER_ROUTE = '(other)';

const BUCKETS = {
  count: [0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000],
  ms: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
  rows: [0, 1, 10, 100, 1000, 10000, 100000, 1000000],
  bytes: [65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456],
};

export interface CostMetricsOptions {
  /** Budget rules, to publish each route's limits; none when running without budgets. */
  readonly rules?: BudgetRuleSet;
  /** Distinct routes (service and route pairs) labelled before the rest become `(other)`. @default 500 */
  readonly maxRoutes?: number;
  /** @default the global meter provider's meter, looked up when the first request ends */
  readonly meter?: Meter;
  /** `service` label of spans whose resource has no service.name. @default 'unknown_service:node' */
  readonly defaultService?: string;
}

/** A labelled route of one service, with the limits that apply to it (none without budgets). */
interface RouteEntry {
  readonly service: string;
  readonly route: string;
  readonly limits: Partial<Record<string, number>>;
}

interface Instruments {
  readonly duration: Histogram;
  readonly queries: Histogram;
  readonly dbTime: Histogram;
  readonly rows: Histogram;
  readonly heapDelta: Histogram;
  readonly breaches: Counter;
  readonly jobsEnqueued: Counter;
  readonly lateOperations: Counter;
}

export class CostMetricsProcessor implements SpanProcessor {
  private readonly rules: BudgetRuleSet | undefined;
  private readonly maxRoutes: number;
  private readonly meterOption: Meter | undefined;
  private readonly defaultService: string;
  /** Routes labelled so far, by service and route. */
  private readonly routes = new Map<string, RouteEntry>();
  /** The service of the last resource seen: a provider's spans share one resource object. */
  private lastResource: Resource | undefined;
  private lastService: string;
  private instruments: Instruments | undefined;

  constructor(options: CostMetricsOptions = {}) {
    this.rules = options.rules;
    this.maxRoutes = options.maxRoutes ?? 500;
    this.meterOption = options.meter;
    this.defaultService = options.defaultService ?? UNKNOWN_SERVICE;
    this.lastService = this.defaultService;
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    try {
      const late = lateOperationOf(span);
      if (late !== undefined) return this.countLate(late);
      const a = span.attributes;
      if (a[COST_DB_QUERIES] === undefined || a[MEASUREMENT_ATTRIBUTE] === true) return;
      const instruments = (this.instruments ??= this.createInstruments());
      const service = this.serviceLabel(span);
      const route = this.routeLabel(span, service);
      const labels = { service, route, status_class: statusClass(a['http.response.status_code']) };
      instruments.duration.record(hrTimeToMilliseconds(span.duration), labels);
      instruments.queries.record(Number(a[COST_DB_QUERIES]), labels);
      instruments.dbTime.record(Number(a[COST_DB_TIME_MS] ?? 0), labels);
      instruments.rows.record(Number(a[COST_DB_ROWS] ?? 0), labels);
      // Histograms take no negative values: a shrinking heap (a GC ran) records as no growth.
      instruments.heapDelta.record(Math.max(0, Number(a[COST_HEAP_DELTA_BYTES] ?? 0)), labels);
      const enqueued = Number(a[COST_JOBS_ENQUEUED] ?? 0);
      if (enqueued > 0) instruments.jobsEnqueued.add(enqueued, { service, route });
      for (const event of span.events) {
        if (event.name !== BUDGET_BREACH_EVENT) continue;
        instruments.breaches.add(1, { service, route, metric: String(event.attributes?.metric), severity: String(event.attributes?.severity) });
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

  private createInstruments(): Instruments {
    const meter = this.meterOption ?? metrics.getMeter('@request-budget/node');
    const histogram = (name: string, description: string, unit: string, boundaries: number[]) =>
      meter.createHistogram(name, { description, unit, advice: { explicitBucketBoundaries: boundaries } });
    const limit = meter.createObservableGauge(METRIC_NAMES.limit, {
      description: 'Budget limit that applies to the route, by metric (from the budget file)',
    });
    limit.addCallback((result) => this.observeLimits(result));
    return {
      duration: histogram(METRIC_NAMES.duration, 'Request (or job) duration', 'ms', BUCKETS.ms),
      queries: histogram(METRIC_NAMES.queries, 'DB operations per request', '{query}', BUCKETS.count),
      dbTime: histogram(METRIC_NAMES.dbTime, 'Total DB time per request', 'ms', BUCKETS.ms),
      rows: histogram(METRIC_NAMES.rows, 'Rows returned per request', '{row}', BUCKETS.rows),
      heapDelta: histogram(METRIC_NAMES.heapDelta, 'Heap growth per request (0 when it shrank)', 'By', BUCKETS.bytes),
      breaches: meter.createCounter(METRIC_NAMES.breaches, { description: 'Budget limits exceeded, by route, metric and severity' }),
      jobsEnqueued: meter.createCounter(METRIC_NAMES.jobsEnqueued, {
        description: 'Jobs and messages put on a queue, by the route (or job) that enqueued them',
        unit: '{job}',
      }),
      lateOperations: meter.createCounter(METRIC_NAMES.lateOperations, {
        description:
          "Queries (kind db) and outgoing HTTP calls (kind http_client) that ended after their request's response, so are in no cost record, by route",
      }),
    };
  }

  private countLate(late: LateOperation): void {
    if (late.root.attributes[MEASUREMENT_ATTRIBUTE] === true) return;
    const instruments = (this.instruments ??= this.createInstruments());
    const service = this.serviceLabel(late.root);
    instruments.lateOperations.add(1, { service, route: this.routeLabel(late.root, service), kind: late.contribution.type });
  }

  private serviceLabel(span: ReadableSpan): string {
    if (span.resource !== this.lastResource) {
      this.lastResource = span.resource;
      this.lastService = serviceNameOf(span.resource) ?? this.defaultService;
    }
    return this.lastService;
  }

  private routeLabel(span: ReadableSpan, service: string): string {
    // The same label as breach reports and alerts (core's routeOf), bounded in number here.
    const { job, method, template, label } = routeOf(span.attributes);
    const key = `${service}\n${label}`;
    if (this.routes.has(key)) return label;
    if (this.routes.size >= this.maxRoutes) return OTHER_ROUTE;
    this.routes.set(key, { service, route: label, limits: this.limitsFor(job, method ?? 'ANY', template) });
    return label;
  }

  private limitsFor(job: string | undefined, method: string, template: string | undefined): Partial<Record<string, number>> {
    if (this.rules === undefined) return {};
    const rule = job !== undefined ? this.rules.forJob(job) : this.rules.forRoute(method, template);
    const limits: Partial<Record<string, number>> = {};
    for (const name of LIMIT_NAMES) {
      const value = rule.limits[name];
      if (value !== undefined) limits[BUDGET_METRICS[name]] = value;
    }
    return limits;
  }

  private observeLimits(result: ObservableResult): void {
    for (const { service, route, limits } of this.routes.values()) {
      for (const [metric, value] of Object.entries(limits)) if (value !== undefined) result.observe(value, { service, route, metric });
    }
  }
}

function statusClass(status: unknown): string {
  const code = Number(status);
  return Number.isInteger(code) && code >= 100 && code < 600 ? `${Math.floor(code / 100)}xx` : 'none';
}
