/**
 * The cost metrics' running totals, as plain numbers per series. Each (service, route,
 * status_class) series holds its histograms — count, sum, min, max and bucket counts — in
 * one Float64Array made on its first request, and each counter cell its total: recording a
 * request is a few additions, with no attribute set hashed (as an SDK instrument's record() does
 * on every call) and nothing allocated. The readers turn the totals into metric data when they
 * collect (cost-metrics-producer.ts). Series are never dropped: the route cap bounds them.
 */
import type { Attributes, HrTime } from '@opentelemetry/api';
import { millisToHrTime } from '@opentelemetry/core';
import { HISTOGRAMS } from './cost-metric-definitions';

/** A histogram's numbers, from its offset in a series' values: count, sum, min, max, then one count per bucket. */
export const COUNT = 0;
export const SUM = 1;
export const MIN = 2;
export const MAX = 3;
export const FIRST_BUCKET = 4;

const BOUNDARIES = HISTOGRAMS.map((histogram) => histogram.boundaries);
/** Where each histogram's numbers start in a series' values. */
export const OFFSETS: readonly number[] = BOUNDARIES.map((_, h) => BOUNDARIES.slice(0, h).reduce((at, b) => at + FIRST_BUCKET + b.length + 1, 0));
const VALUES_LENGTH = BOUNDARIES.reduce((length, b) => length + FIRST_BUCKET + b.length + 1, 0);
/** A histogram's numbers in a delta reader's interval, from INTERVAL_FIELDS * h: min, max, sum. */
export const INTERVAL_MIN = 0;
export const INTERVAL_MAX = 1;
export const INTERVAL_SUM = 2;
export const INTERVAL_FIELDS = 3;
/** Numbers per delta reader in a series' intervals. */
export const INTERVAL_LENGTH = HISTOGRAMS.length * INTERVAL_FIELDS;

/** The `status_class` label by index: see statusClassIndex. */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'none'] as const;

/** Index in STATUS_CLASSES of an HTTP status code attribute: its class, or `none` (a job, no status). */
export function statusClassIndex(status: unknown): number {
  const code = Number(status);
  return Number.isInteger(code) && code >= 100 && code < 600 ? Math.floor(code / 100) - 1 : STATUS_CLASSES.length - 1;
}

/** The histograms of one (service, route, status_class). */
export class HistogramSeries {
  /** Cumulative since the first request, at OFFSETS. */
  readonly values = emptyValues();
  /**
   * For each reader that reports deltas (slot r at r * INTERVAL_LENGTH): each histogram's min,
   * max and sum since that reader last collected. The totals cannot tell the min and max, and a
   * difference of sums is not always the sum of the differences in floating point.
   */
  intervals: Float64Array;

  constructor(
    readonly attributes: Attributes,
    readonly startTime: HrTime,
    deltaReaders: number,
  ) {
    this.intervals = emptyIntervals(deltaReaders);
  }

  /**
   * One request's values (`request`, in HISTOGRAMS order). Taken from an array rather than as
   * arguments: a double passed to a call that is not inlined is boxed, an allocation per value.
   */
  record(request: Float64Array): void {
    const values = this.values;
    const intervals = this.intervals;
    for (let h = 0; h < HISTOGRAMS.length; h += 1) {
      const value = request[h];
      // As the SDK's histogram: a negative value is dropped, NaN ignored (an absent figure is passed as NaN).
      if (!(value >= 0)) continue;
      const at = OFFSETS[h];
      values[at + COUNT] += 1;
      values[at + SUM] += value;
      if (value < values[at + MIN]) values[at + MIN] = value;
      if (value > values[at + MAX]) values[at + MAX] = value;
      // Boundaries are inclusive upper bounds, as in the SDK's explicit bucket histogram.
      const boundaries = BOUNDARIES[h];
      let bucket = 0;
      while (bucket < boundaries.length && value > boundaries[bucket]) bucket += 1;
      values[at + FIRST_BUCKET + bucket] += 1;
      for (let i = h * INTERVAL_FIELDS; i < intervals.length; i += INTERVAL_LENGTH) {
        if (value < intervals[i + INTERVAL_MIN]) intervals[i + INTERVAL_MIN] = value;
        if (value > intervals[i + INTERVAL_MAX]) intervals[i + INTERVAL_MAX] = value;
        intervals[i + INTERVAL_SUM] += value;
      }
    }
  }

  /** Room for one more delta reader's interval. */
  addDeltaReader(): void {
    const grown = emptyIntervals(this.intervals.length / INTERVAL_LENGTH + 1);
    grown.set(this.intervals);
    this.intervals = grown;
  }

  /** Starts delta reader `slot`'s next interval. */
  resetInterval(slot: number): void {
    resetInterval(this.intervals, slot * INTERVAL_LENGTH);
  }
}

/** A monotonic counter's total for one label set. */
export interface CounterCell {
  readonly attributes: Attributes;
  readonly startTime: HrTime;
  value: number;
}

/** One budget limit of a route, as the `request_budget.limit` gauge reports it. */
export interface RouteLimit {
  readonly attributes: Attributes;
  readonly value: number;
}

/** A `request_budget.unjudged` cell: its metric kept apart to match `budget.unjudged` entries without slicing them. */
export interface UnjudgedCell extends CounterCell {
  readonly metric: string;
}

/** The `metric` label of `budget.unjudged` entries that are not `metric: reason` with a short metric, or past a route's cap. */
export const OTHER_METRIC = '(other)';
/** Distinct `metric` labels of `request_budget.unjudged` per route; core judges fewer limits than this. */
export const MAX_UNJUDGED_METRICS = 16;
/** Longest `metric` label taken from a `budget.unjudged` entry. */
export const MAX_METRIC_LENGTH = 64;
/** Where a route's memory estimate and its error are in CostRoute.memoryEstimate. */
export const ESTIMATE = 0;
export const ESTIMATE_ERROR = 1;

/** A labelled route of one service (or the service's `(other)`): its series by status class and its counter cells. */
export class CostRoute {
  /** By statusClassIndex, made on the first request of that class. */
  readonly series: (HistogramSeries | undefined)[] = STATUS_CLASSES.map(() => undefined);
  jobsEnqueued: CounterCell | undefined;
  /** By metric, then severity. */
  readonly breaches = new Map<string, Map<string, CounterCell>>();
  /** By kind. */
  readonly lateOperations = new Map<string, CounterCell>();
  /** In the order of their first entry, at most MAX_UNJUDGED_METRICS besides OTHER_METRIC's. */
  readonly unjudged: UnjudgedCell[] = [];
  /**
   * The last memory estimate and error its requests carried (at ESTIMATE, ESTIMATE_ERROR), NaN
   * until one does. Written in place by the processor: storing a double in an object's field may box it.
   */
  readonly memoryEstimate = new Float64Array([NaN, NaN]);
  /** `{ service, route }`, the memory estimate gauges' labels. */
  readonly attributes: Attributes;

  constructor(
    readonly service: string,
    readonly route: string,
    readonly limits: readonly RouteLimit[],
    readonly createdAt: HrTime,
  ) {
    this.attributes = { service, route };
  }
}

/** Every route, series and counter cell, each list in the order of its first request (the SDK's order). */
export class CostMetricsState {
  readonly routes: CostRoute[] = [];
  readonly series: HistogramSeries[] = [];
  readonly counters = {
    breaches: [] as CounterCell[],
    jobsEnqueued: [] as CounterCell[],
    lateOperations: [] as CounterCell[],
    unjudged: [] as CounterCell[],
  };
  private deltaReaders = 0;

  addRoute(service: string, route: string, limits: Partial<Record<string, number>>): CostRoute {
    const routeLimits: RouteLimit[] = [];
    for (const [metric, value] of Object.entries(limits)) if (value !== undefined) routeLimits.push({ attributes: { service, route, metric }, value });
    const entry = new CostRoute(service, route, routeLimits, now());
    this.routes.push(entry);
    return entry;
  }

  /** One request of `route` with status class `status` (statusClassIndex), its values in HISTOGRAMS order. */
  record(route: CostRoute, status: number, request: Float64Array): void {
    (route.series[status] ?? this.addSeries(route, status)).record(request);
  }

  addJobsEnqueued(route: CostRoute, count: number): void {
    (route.jobsEnqueued ??= this.addCell(this.counters.jobsEnqueued, { service: route.service, route: route.route })).value += count;
  }

  countBreach(route: CostRoute, metric: string, severity: string): void {
    let bySeverity = route.breaches.get(metric);
    if (bySeverity === undefined) route.breaches.set(metric, (bySeverity = new Map()));
    let cell = bySeverity.get(severity);
    if (cell === undefined) {
      cell = this.addCell(this.counters.breaches, { service: route.service, route: route.route, metric, severity });
      bySeverity.set(severity, cell);
    }
    cell.value += 1;
  }

  countLateOperation(route: CostRoute, kind: string): void {
    let cell = route.lateOperations.get(kind);
    if (cell === undefined) {
      cell = this.addCell(this.counters.lateOperations, { service: route.service, route: route.route, kind });
      route.lateOperations.set(kind, cell);
    }
    cell.value += 1;
  }

  /**
   * One entry of a request's `budget.unjudged`, `metric: reason`: counted under its metric. A
   * known metric is found by comparing the entry's start, so counting makes no string.
   */
  countUnjudged(route: CostRoute, entry: string): void {
    const cells = route.unjudged;
    for (let i = 0; i < cells.length; i += 1) {
      const cell = cells[i];
      const length = cell.metric.length;
      // ': ' after the metric (58 and 32), so `db.bytes` does not take `db.bytes_x: …`.
      if (entry.startsWith(cell.metric) && entry.charCodeAt(length) === 58 && entry.charCodeAt(length + 1) === 32) {
        cell.value += 1;
        return;
      }
    }
    this.unjudgedCell(route, metricOf(entry)).value += 1;
  }

  /** A reader that reports deltas: its slot in every series' intervals. */
  addDeltaReader(): number {
    for (const series of this.series) series.addDeltaReader();
    return this.deltaReaders++;
  }

  private addSeries(route: CostRoute, status: number): HistogramSeries {
    const series = new HistogramSeries({ service: route.service, route: route.route, status_class: STATUS_CLASSES[status] }, now(), this.deltaReaders);
    route.series[status] = series;
    this.series.push(series);
    return series;
  }

  /** The route's cell for a metric not counted yet (its OTHER_METRIC cell past the cap). */
  private unjudgedCell(route: CostRoute, metric: string): UnjudgedCell {
    const cells = route.unjudged;
    const other = cells.find((cell) => cell.metric === OTHER_METRIC);
    const label = cells.length - (other === undefined ? 0 : 1) < MAX_UNJUDGED_METRICS ? metric : OTHER_METRIC;
    if (label === OTHER_METRIC && other !== undefined) return other;
    const cell: UnjudgedCell = { attributes: { service: route.service, route: route.route, metric: label }, startTime: now(), value: 0, metric: label };
    cells.push(cell);
    this.counters.unjudged.push(cell);
    return cell;
  }

  private addCell(list: CounterCell[], attributes: Attributes): CounterCell {
    const cell = { attributes, startTime: now(), value: 0 };
    list.push(cell);
    return cell;
  }
}

/** The metric of a `budget.unjudged` entry, `metric: reason`; OTHER_METRIC when it is not one, or the metric is too long to be a label. */
function metricOf(entry: string): string {
  const end = entry.indexOf(': ');
  return end > 0 && end <= MAX_METRIC_LENGTH ? entry.slice(0, end) : OTHER_METRIC;
}

/** As the SDK stamps a series' start: the wall clock in milliseconds. */
function now(): HrTime {
  return millisToHrTime(Date.now());
}

function emptyValues(): Float64Array {
  const values = new Float64Array(VALUES_LENGTH);
  for (const at of OFFSETS) {
    values[at + MIN] = Infinity;
    values[at + MAX] = -Infinity;
  }
  return values;
}

/** Intervals for `readers` delta readers, each empty. */
function emptyIntervals(readers: number): Float64Array {
  const intervals = new Float64Array(readers * INTERVAL_LENGTH);
  for (let at = 0; at < intervals.length; at += INTERVAL_LENGTH) resetInterval(intervals, at);
  return intervals;
}

/** Empties one delta reader's interval, from `at`. */
function resetInterval(intervals: Float64Array, at: number): void {
  for (let i = at; i < at + INTERVAL_LENGTH; i += INTERVAL_FIELDS) {
    intervals[i + INTERVAL_MIN] = Infinity;
    intervals[i + INTERVAL_MAX] = -Infinity;
    intervals[i + INTERVAL_SUM] = 0;
  }
}
