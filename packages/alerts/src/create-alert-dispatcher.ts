/**
 * The one place sinks are built from settings, for the app (@request-budget/node) and the
 * collector alike.
 */
import { AlertDispatcher, type AlertDispatcherOptions } from './alert-dispatcher';
import type { AlertSink } from './alert-sink';
import { AlertmanagerAlertSink } from './alertmanager-alert-sink';
import { LogAlertSink } from './log-alert-sink';
import { WebhookAlertSink } from './webhook-alert-sink';

/** Where breaches go. */
export interface AlertDeliverySettings {
  /** One JSON line per breach on stderr. */
  readonly log: boolean;
  /** Alertmanager base URL; none when undefined. */
  readonly alertmanagerUrl?: string | undefined;
  readonly alertmanagerHeaders?: Readonly<Record<string, string>> | undefined;
  /** Re-send interval of firing Alertmanager alerts. */
  readonly resendIntervalMs: number;
  /** Quiet period after which an Alertmanager alert is resolved. */
  readonly resolveAfterMs: number;
  /** Link shown by Alertmanager for the alert's source (the same for every alert). */
  readonly generatorURL?: string | undefined;
  /**
   * Template of a link to one trace in the tracing UI, e.g. `http://jaeger:16686/trace/{traceId}`:
   * each Alertmanager alert's generatorURL (over `generatorURL`) and each breach event's
   * `trace_url` link to the trace that breached.
   */
  readonly traceUrl?: string | undefined;
  /** Webhook URL; none when undefined. */
  readonly webhookUrl?: string | undefined;
  readonly webhookHeaders?: Readonly<Record<string, string>> | undefined;
}

/** The dispatcher for the configured sinks, or undefined when none is configured. */
export function createAlertDispatcher(
  settings: AlertDeliverySettings,
  reportProblem: (message: string) => void,
  options: AlertDispatcherOptions = {},
): AlertDispatcher | undefined {
  const sinks: AlertSink[] = [];
  const traceUrl = settings.traceUrl !== undefined ? { traceUrl: settings.traceUrl } : {};
  if (settings.log) sinks.push(new LogAlertSink(traceUrl));
  if (settings.alertmanagerUrl !== undefined) {
    sinks.push(
      new AlertmanagerAlertSink({
        url: settings.alertmanagerUrl,
        resendIntervalMs: settings.resendIntervalMs,
        resolveAfterMs: settings.resolveAfterMs,
        reportProblem,
        ...(settings.alertmanagerHeaders !== undefined ? { headers: settings.alertmanagerHeaders } : {}),
        ...(settings.generatorURL !== undefined ? { generatorURL: settings.generatorURL } : {}),
        ...traceUrl,
      }),
    );
  }
  if (settings.webhookUrl !== undefined) {
    sinks.push(
      new WebhookAlertSink({
        url: settings.webhookUrl,
        reportProblem,
        ...(settings.webhookHeaders !== undefined ? { headers: { ...settings.webhookHeaders } } : {}),
        ...traceUrl,
      }),
    );
  }
  return sinks.length > 0 ? new AlertDispatcher(sinks, options) : undefined;
}
