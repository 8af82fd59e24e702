/**
 * What a breach says to the outside world — the log line, the Alertmanager alert, the webhook
 * body — built from one {@link BreachReport}, so every sink tells the same story.
 */
import type { Severity } from './budget-file';
import type { Violation } from './evaluator';

/** Alert name under which every budget breach is sent to Alertmanager. */
export const ALERT_NAME = 'RequestBudgetExceeded';

/** One violated limit of one request or job. */
export interface BreachReport {
  readonly service: string;
  /** `GET /users/:id` for a request (method and route template), `job email.send` for a job. */
  readonly route: string;
  /** The budget rule that applied (`GET /users/:id`, `email.*` or `defaults`). */
  readonly rule: string;
  readonly metric: string;
  readonly value: number;
  readonly limit: number;
  readonly severity: Severity;
  readonly traceId: string;
  readonly spanId: string;
  /** When the request or job ended, ms since the epoch. */
  readonly timeMs: number;
  readonly statement?: string;
}

/** Label for requests that have no route template: bounded, unlike the raw URL. */
export const UNROUTED = '(unrouted)';

export function breachReports(
  violations: readonly Violation[],
  context: Omit<BreachReport, 'metric' | 'value' | 'limit' | 'severity' | 'statement'>,
): BreachReport[] {
  return violations.map((violation) => ({
    ...context,
    metric: violation.metric,
    value: violation.value,
    limit: violation.limit,
    severity: violation.severity,
    ...(violation.statement !== undefined ? { statement: violation.statement } : {}),
  }));
}

/** Alertmanager identifies an alert by its labels: one alert per service, route and metric. */
export function alertKey(report: Pick<BreachReport, 'service' | 'route' | 'metric'>): string {
  return JSON.stringify([report.service, report.route, report.metric]);
}

/** An alert in the Alertmanager v2 API's postable form. */
export interface PostableAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt?: string;
  generatorURL?: string;
}

/**
 * The Alertmanager alert for a breach that is still going on (`endsAt` unset: Alertmanager
 * resolves it by its own timeout unless re-sent) or resolved (`endsAt` given).
 */
export function toAlertmanagerAlert(report: BreachReport, startsAtMs: number, endsAtMs?: number, generatorURL?: string): PostableAlert {
  return {
    labels: {
      alertname: ALERT_NAME,
      service: report.service,
      route: report.route,
      metric: report.metric,
      severity: report.severity,
    },
    annotations: {
      summary: `${report.route} exceeded its ${report.metric} budget: ${report.value} > ${report.limit}`,
      value: String(report.value),
      limit: String(report.limit),
      rule: report.rule,
      trace_id: report.traceId,
      ...(report.statement !== undefined ? { statement: report.statement } : {}),
    },
    startsAt: new Date(startsAtMs).toISOString(),
    ...(endsAtMs !== undefined ? { endsAt: new Date(endsAtMs).toISOString() } : {}),
    ...(generatorURL !== undefined ? { generatorURL } : {}),
  };
}

/**
 * The JSON object written as one log line and posted to webhooks; `traceUrl`, the link to the
 * breaching trace in the tracing UI (see trace-link.ts), is added as `trace_url` when given.
 */
export function toBreachEvent(report: BreachReport, traceUrl?: string): Record<string, string | number> {
  return {
    event: 'budget.breach',
    time: new Date(report.timeMs).toISOString(),
    service: report.service,
    route: report.route,
    rule: report.rule,
    metric: report.metric,
    value: report.value,
    limit: report.limit,
    severity: report.severity,
    trace_id: report.traceId,
    span_id: report.spanId,
    ...(report.statement !== undefined ? { statement: report.statement } : {}),
    ...(traceUrl !== undefined ? { trace_url: traceUrl } : {}),
  };
}
