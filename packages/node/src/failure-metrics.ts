/**
 * request-budget's own delivery failures as metrics, on the cost meter provider: spans a trace
 * exporter could not export, and alert deliveries that failed or were given up on. The stderr
 * lines say so once in a while; these counters let Prometheus alert on it.
 */
import type { Counter, Meter } from '@opentelemetry/api';
import type { AlertDispatcher } from '@request-budget/alerts';

/** Metric names, as OpenTelemetry instruments (Prometheus adds `_total`). */
export const FAILURE_METRIC_NAMES = {
  /** Spans a trace exporter could not export (they are dropped), by exporter. */
  exportFailures: 'request_budget.export_failures',
  /** Alert deliveries that succeeded, by sink. */
  alertDeliveries: 'request_budget.alert_deliveries',
  /** Alert delivery attempts that failed (each retry counts), by sink. */
  alertFailures: 'request_budget.alert_failures',
  /** Breaches an alert sink gave up on (queue full, or retries exhausted), by sink. */
  alertDrops: 'request_budget.alert_drops',
} as const;

export interface FailureMetricsOptions {
  readonly meter: Meter;
  /** The `service` label, as on the cost metrics. */
  readonly service: string;
  /** The configured trace exporters: each one's failure count is published from 0. */
  readonly exporters: readonly string[];
  /** The alert sinks whose stats are published; none without budgets. */
  readonly alerts?: AlertDispatcher | undefined;
}

export class FailureMetrics {
  private readonly exportFailures: Counter;
  private readonly service: string;

  constructor(options: FailureMetricsOptions) {
    const { meter, service, exporters, alerts } = options;
    this.service = service;
    this.exportFailures = meter.createCounter(FAILURE_METRIC_NAMES.exportFailures, {
      description: 'Spans a trace exporter could not export (they are dropped), by exporter',
      unit: '{span}',
    });
    // From 0: the first failure is then an increase that rate() and increase() see.
    for (const exporter of exporters) this.exportFailures.add(0, { service, exporter });
    if (alerts !== undefined) this.observeAlerts(meter, alerts);
  }

  /** Counts `spans` that `exporter` could not export. Never throws. */
  exportFailed(exporter: string, spans: number): void {
    try {
      this.exportFailures.add(spans, { service: this.service, exporter });
    } catch {
      // A metric must not break the export path.
    }
  }

  private observeAlerts(meter: Meter, alerts: AlertDispatcher): void {
    const outcomes = [
      ['delivered', FAILURE_METRIC_NAMES.alertDeliveries, 'Alert deliveries that succeeded (lines written, alerts or batches posted), by sink'],
      ['failed', FAILURE_METRIC_NAMES.alertFailures, 'Alert delivery attempts that failed (each retry counts), by sink'],
      ['dropped', FAILURE_METRIC_NAMES.alertDrops, 'Breaches an alert sink gave up on (queue full, or retries exhausted), by sink'],
    ] as const;
    for (const [outcome, name, description] of outcomes) {
      meter.createObservableCounter(name, { description }).addCallback((result) => {
        for (const [sink, stats] of Object.entries(alerts.stats())) result.observe(stats[outcome], { service: this.service, sink });
      });
    }
  }
}
