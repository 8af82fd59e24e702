/**
 * @request-budget/alerts: delivers breach reports to a log, Prometheus Alertmanager and webhooks.
 * Used by @request-budget/node in the app and by the collector; loads no OpenTelemetry package.
 */
export { AlertDispatcher } from './alert-dispatcher';
export type { AlertDispatcherOptions } from './alert-dispatcher';
export type { AlertSink, AlertSinkStats } from './alert-sink';
export { createAlertDispatcher } from './create-alert-dispatcher';
export type { AlertDeliverySettings } from './create-alert-dispatcher';
export { LogAlertSink } from './log-alert-sink';
export type { LogAlertSinkOptions } from './log-alert-sink';
export { AlertmanagerAlertSink } from './alertmanager-alert-sink';
export type { AlertmanagerAlertSinkOptions } from './alertmanager-alert-sink';
export { WebhookAlertSink } from './webhook-alert-sink';
export type { WebhookAlertSinkOptions } from './webhook-alert-sink';
export { describeError } from './describe-error';
export { FailureReport, FAILURE_REPORT_INTERVAL_MS } from './failure-report';
export type { FailureTally } from './failure-report';
