/**
 * Hands the cost metrics to one metric reader (its `metricProducers` option), as the SDK would
 * have reported the same instruments to it: the histograms, counters and gauges of
 * cost-metric-definitions.ts, under the scope `@request-budget/node`, cumulative or delta as the
 * reader (its exporter) selects per instrument type. The work is done here, per collection, from
 * the running totals of cost-metrics-state.ts; nothing here runs per request.
 */
import type { HrTime } from '@opentelemetry/api';
import { millisToHrTime } from '@opentelemetry/core';
import { emptyResource } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  DataPointType,
  InstrumentType,
  type AggregationTemporalitySelector,
  type CollectionResult,
  type DataPoint,
  type Histogram,
  type MetricData,
  type MetricDescriptor,
  type MetricProducer,
} from '@opentelemetry/sdk-metrics';
import { COST_METRICS_SCOPE, COUNTERS, HISTOGRAMS, LIMIT_GAUGE, MEMORY_ESTIMATE_GAUGES } from './cost-metric-definitions';
import {
  COUNT,
  FIRST_BUCKET,
  INTERVAL_FIELDS,
  INTERVAL_LENGTH,
  INTERVAL_MAX,
  INTERVAL_MIN,
  INTERVAL_SUM,
  MAX,
  MIN,
  OFFSETS,
  SUM,
  type CostMetricsState,
  type CounterCell,
  type HistogramSeries,
} from './cost-metrics-state';

/** What a delta reader reported last: the totals its next deltas are taken from. */
interface DeltaBase {
  collectedAt: HrTime;
  readonly series: Map<HistogramSeries, Float64Array>;
  readonly cells: Map<CounterCell, number>;
}

export class CostMetricsProducer implements MetricProducer {
  private readonly state: CostMetricsState;
  private readonly histogramTemporality: AggregationTemporality;
  private readonly counterTemporality: AggregationTemporality;
  private readonly gaugeTemporality: AggregationTemporality;
  /** This reader's slot in each series' intervals, when its histograms are delta. */
  private readonly deltaSlot: number | undefined;
  private readonly base: DeltaBase | undefined;

  /** `temporality` is the reader's selector (its exporter's); cumulative for every type when absent. */
  constructor(state: CostMetricsState, temporality: AggregationTemporalitySelector = () => AggregationTemporality.CUMULATIVE) {
    this.state = state;
    this.histogramTemporality = temporality(InstrumentType.HISTOGRAM);
    this.counterTemporality = temporality(InstrumentType.COUNTER);
    this.gaugeTemporality = temporality(InstrumentType.OBSERVABLE_GAUGE);
    const delta = [this.histogramTemporality, this.counterTemporality, this.gaugeTemporality].includes(AggregationTemporality.DELTA);
    this.deltaSlot = this.histogramTemporality === AggregationTemporality.DELTA ? state.addDeltaReader() : undefined;
    this.base = delta ? { collectedAt: millisToHrTime(Date.now()), series: new Map(), cells: new Map() } : undefined;
  }

  collect(): Promise<CollectionResult> {
    const collectedAt = millisToHrTime(Date.now());
    const metrics: MetricData[] = [];
    const add = (metric: MetricData) => {
      if (metric.dataPoints.length > 0) metrics.push(metric);
    };
    // The order the instruments were created in: the gauge, the histograms, the counters; then the
    // metrics added since (memory estimates, unjudged limits), so the others keep their places.
    add(this.limitGauge(collectedAt));
    HISTOGRAMS.forEach(({ descriptor, boundaries }, h) => add(this.histogram(descriptor, boundaries, h, collectedAt)));
    add(this.counter(COUNTERS.breaches, this.state.counters.breaches, collectedAt));
    add(this.counter(COUNTERS.jobsEnqueued, this.state.counters.jobsEnqueued, collectedAt));
    add(this.counter(COUNTERS.lateOperations, this.state.counters.lateOperations, collectedAt));
    MEMORY_ESTIMATE_GAUGES.forEach((descriptor, at) => add(this.memoryEstimateGauge(descriptor, at, collectedAt)));
    add(this.counter(COUNTERS.unjudged, this.state.counters.unjudged, collectedAt));
    this.endInterval(collectedAt);
    // The reader reports the meter provider's resource, not this one.
    return Promise.resolve({
      resourceMetrics: { resource: emptyResource(), scopeMetrics: metrics.length > 0 ? [{ scope: COST_METRICS_SCOPE, metrics }] : [] },
      errors: [],
    });
  }

  private limitGauge(collectedAt: HrTime): MetricData {
    const dataPoints: DataPoint<number>[] = [];
    for (const route of this.state.routes) {
      const startTime = this.startOf(route.createdAt, this.gaugeTemporality);
      for (const { attributes, value } of route.limits) dataPoints.push({ attributes, startTime, endTime: collectedAt, value });
    }
    return { descriptor: LIMIT_GAUGE, aggregationTemporality: this.gaugeTemporality, dataPointType: DataPointType.GAUGE, dataPoints };
  }

  /** One of each route's last memory estimate figures (`at` in CostRoute.memoryEstimate): no point for a route none of whose requests carried one. */
  private memoryEstimateGauge(descriptor: MetricDescriptor, at: number, collectedAt: HrTime): MetricData {
    const dataPoints: DataPoint<number>[] = [];
    for (const route of this.state.routes) {
      const value = route.memoryEstimate[at];
      if (Number.isNaN(value)) continue;
      dataPoints.push({ attributes: route.attributes, startTime: this.startOf(route.createdAt, this.gaugeTemporality), endTime: collectedAt, value });
    }
    return { descriptor, aggregationTemporality: this.gaugeTemporality, dataPointType: DataPointType.GAUGE, dataPoints };
  }

  private histogram(descriptor: MetricDescriptor, boundaries: number[], h: number, collectedAt: HrTime): MetricData {
    const at = OFFSETS[h];
    const delta = this.histogramTemporality === AggregationTemporality.DELTA;
    const dataPoints: DataPoint<Histogram>[] = [];
    for (const series of this.state.series) {
      const values = series.values;
      const previous = delta ? this.base?.series.get(series) : undefined;
      const since = (i: number) => values[i] - (previous?.[i] ?? 0);
      const count = since(at + COUNT);
      // A delta reader hears of a series only when it had requests since the last collection, as from
      // the SDK; any reader, of a histogram only once it recorded a value there (db.bytes is absent
      // from some requests).
      if (count === 0) continue;
      const counts: number[] = [];
      for (let b = 0; b <= boundaries.length; b += 1) counts.push(since(at + FIRST_BUCKET + b));
      const interval = delta ? this.deltaSlot! * INTERVAL_LENGTH + h * INTERVAL_FIELDS : -1;
      const [min, max, sum] = delta
        ? [series.intervals[interval + INTERVAL_MIN], series.intervals[interval + INTERVAL_MAX], series.intervals[interval + INTERVAL_SUM]]
        : [values[at + MIN], values[at + MAX], values[at + SUM]];
      dataPoints.push({
        attributes: series.attributes,
        startTime: this.startOf(series.startTime, this.histogramTemporality),
        endTime: collectedAt,
        // No min and max without a value, as from the SDK.
        value: { buckets: { boundaries, counts }, sum, count, min: count > 0 ? min : undefined, max: count > 0 ? max : undefined },
      });
    }
    return { descriptor, aggregationTemporality: this.histogramTemporality, dataPointType: DataPointType.HISTOGRAM, dataPoints };
  }

  private counter(descriptor: MetricDescriptor, cells: readonly CounterCell[], collectedAt: HrTime): MetricData {
    const delta = this.counterTemporality === AggregationTemporality.DELTA;
    const dataPoints: DataPoint<number>[] = [];
    for (const cell of cells) {
      const value = cell.value - (delta ? (this.base?.cells.get(cell) ?? 0) : 0);
      if (delta && value === 0) continue;
      dataPoints.push({ attributes: cell.attributes, startTime: this.startOf(cell.startTime, this.counterTemporality), endTime: collectedAt, value });
    }
    return { descriptor, aggregationTemporality: this.counterTemporality, dataPointType: DataPointType.SUM, dataPoints, isMonotonic: true };
  }

  /** Cumulative: the series' first request. Delta: the last collection, or the first request if later. */
  private startOf(firstRecorded: HrTime, temporality: AggregationTemporality): HrTime {
    if (temporality !== AggregationTemporality.DELTA || this.base === undefined) return firstRecorded;
    return compareHrTime(firstRecorded, this.base.collectedAt) > 0 ? firstRecorded : this.base.collectedAt;
  }

  /** A delta reader's next interval starts now: the totals so far become its base. */
  private endInterval(collectedAt: HrTime): void {
    if (this.base === undefined) return;
    this.base.collectedAt = collectedAt;
    if (this.histogramTemporality === AggregationTemporality.DELTA) {
      for (const series of this.state.series) {
        const copy = this.base.series.get(series);
        if (copy === undefined) this.base.series.set(series, series.values.slice());
        else copy.set(series.values);
        series.resetInterval(this.deltaSlot!);
      }
    }
    if (this.counterTemporality === AggregationTemporality.DELTA) {
      for (const list of Object.values(this.state.counters)) for (const cell of list) this.base.cells.set(cell, cell.value);
    }
  }
}

function compareHrTime(a: HrTime, b: HrTime): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}
