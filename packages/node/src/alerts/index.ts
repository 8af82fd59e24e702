/**
 * The alert sinks on their own (`@request-budget/node/alerts`): for consumers that deliver breach
 * reports without running the SDK, such as the collector. Loads no OpenTelemetry package.
 */
export { AlertDispatcher } from './alert-dispatcher';
export type { AlertSink, AlertSinkStats } from './alert-sink';
export { LogAlertSink } from './log-alert-sink';
export type { LogAlertSinkOptions } from './log-alert-sink';
export { AlertmanagerAlertSink } from './alertmanager-alert-sink';
export type { AlertmanagerAlertSinkOptions } from './alertmanager-alert-sink';
export { WebhookAlertSink } from './webhook-alert-sink';
export type { WebhookAlertSinkOptions } from './webhook-alert-sink';
