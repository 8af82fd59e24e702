/**
 * Sends breaches to Prometheus Alertmanager (`POST /api/v2/alerts`). One alert per service, route
 * and metric (its labels, which are Alertmanager's identity); a new alert goes out within
 * `sendIntervalMs`; while breaches go on it is re-sent every `resendIntervalMs`; after
 * `resolveAfterMs` without a breach it is sent once more with `endsAt` = now, which resolves it.
 * Every alert carries an `endsAt` of `resolveAfterMs` ahead, so if this process dies its alerts
 * still resolve on their own.
 *
 * Failures are retried on the next ticks with exponential backoff (state is kept, so nothing is
 * lost but the intermediate values); they are said with their cause, the first at once, then at
 * most once a minute with the count since (failure-report.ts).
 */
import { alertKey, backoffDelayMs, toAlertmanagerAlert, traceLink, type BreachReport, type PostableAlert } from '@request-budget/core';
import { describeError } from './describe-error';
import { emptyStats, type AlertSink } from './alert-sink';
import { FailureReport } from './failure-report';

export interface AlertmanagerAlertSinkOptions {
  /** Alertmanager base URL, e.g. `http://alertmanager:9093`. */
  readonly url: string;
  /** @default 1000 */
  readonly sendIntervalMs?: number;
  /** @default 60000 (Alertmanager clients re-send every 30 s – 3 min) */
  readonly resendIntervalMs?: number;
  /** Quiet period after which an alert is resolved. @default 300000 */
  readonly resolveAfterMs?: number;
  /** Distinct alerts tracked; breaches of further ones are dropped and counted. @default 1000 */
  readonly maxAlerts?: number;
  /** @default 5000 */
  readonly requestTimeoutMs?: number;
  /** Link shown by Alertmanager for the alert's source, e.g. a Jaeger search URL. */
  readonly generatorURL?: string;
  /**
   * Template of a link to one trace, e.g. `http://jaeger:16686/trace/{traceId}`: each alert's
   * generatorURL becomes the link to the trace of its latest breach (over `generatorURL`).
   * @default none
   */
  readonly traceUrl?: string;
  /** Extra request headers, e.g. `authorization` for an Alertmanager behind a proxy. @default none */
  readonly headers?: Readonly<Record<string, string>>;
  /** Where failures are said: the first at once, then at most once a minute. */
  readonly reportProblem: (message: string) => void;
  /** @default Date.now (tests pass their own clock) */
  readonly now?: () => number;
}

interface TrackedAlert {
  report: BreachReport;
  readonly startsAtMs: number;
  lastBreachMs: number;
  /** 0 until first delivered. */
  lastSentMs: number;
  /** A newer breach than the one last sent (value changed, or a resolved alert fired again). */
  changed: boolean;
}

const MAX_BACKOFF_MS = 60_000;

export class AlertmanagerAlertSink implements AlertSink {
  readonly name = 'alertmanager';
  readonly stats = emptyStats();
  private readonly endpoint: string;
  private readonly sendIntervalMs: number;
  private readonly resendIntervalMs: number;
  private readonly resolveAfterMs: number;
  private readonly maxAlerts: number;
  private readonly requestTimeoutMs: number;
  private readonly generatorURL: string | undefined;
  private readonly traceUrl: string | undefined;
  private readonly headers: Record<string, string>;
  private readonly failures: FailureReport;
  private readonly alerts = new Map<string, TrackedAlert>();
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private consecutiveFailures = 0;
  private nextAttemptMs = 0;

  constructor(options: AlertmanagerAlertSinkOptions) {
    this.endpoint = `${options.url.replace(/\/+$/, '')}/api/v2/alerts`;
    this.sendIntervalMs = options.sendIntervalMs ?? 1000;
    this.resendIntervalMs = options.resendIntervalMs ?? 60_000;
    this.resolveAfterMs = options.resolveAfterMs ?? 300_000;
    this.maxAlerts = options.maxAlerts ?? 1000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5000;
    this.generatorURL = options.generatorURL;
    this.traceUrl = options.traceUrl;
    this.headers = { ...options.headers, 'content-type': 'application/json' };
    this.failures = new FailureReport(options.reportProblem, options.now);
  }

  /** Alerts currently tracked (firing or waiting to be resolved). */
  get activeAlerts(): number {
    return this.alerts.size;
  }

  accept(report: BreachReport): void {
    const key = alertKey(report);
    const now = Date.now();
    const tracked = this.alerts.get(key);
    if (tracked !== undefined) {
      tracked.report = report;
      tracked.lastBreachMs = now;
      tracked.changed = true;
    } else if (this.alerts.size < this.maxAlerts) {
      this.alerts.set(key, { report, startsAtMs: report.timeMs, lastBreachMs: now, lastSentMs: 0, changed: true });
    } else {
      this.stats.dropped += 1;
      return;
    }
    this.timer ??= setInterval(() => void this.tick(), this.sendIntervalMs).unref();
  }

  flush(): Promise<void> {
    return this.tick(true);
  }

  async shutdown(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.tick(true);
  }

  private tick(force = false): Promise<void> {
    this.sending ??= this.send(force).finally(() => {
      this.sending = undefined;
      if (this.alerts.size === 0 && this.timer !== undefined) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    });
    return this.sending;
  }

  private async send(force: boolean): Promise<void> {
    const now = Date.now();
    if (!force && now < this.nextAttemptMs) return;
    const due: { key: string; alert: PostableAlert; resolves: boolean; tracked: TrackedAlert }[] = [];
    for (const [key, tracked] of this.alerts) {
      const resolves = now - tracked.lastBreachMs >= this.resolveAfterMs;
      const dueForResend = tracked.lastSentMs === 0 || tracked.changed || now - tracked.lastSentMs >= this.resendIntervalMs;
      if (!resolves && !dueForResend) continue;
      const endsAtMs = resolves ? now : now + this.resolveAfterMs;
      const generatorURL = this.traceUrl !== undefined ? traceLink(this.traceUrl, tracked.report.traceId) : this.generatorURL;
      due.push({ key, tracked, resolves, alert: toAlertmanagerAlert(tracked.report, tracked.startsAtMs, endsAtMs, generatorURL) });
    }
    if (due.length === 0) return;
    try {
      const response = await fetch(this.endpoint, {
        method: 'POST',
        headers: this.headers,
        body: JSON.stringify(due.map((entry) => entry.alert)),
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
      await response.body?.cancel();
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
    } catch (error) {
      this.stats.failed += 1;
      this.failures.failed(
        due.length,
        ({ times }) =>
          `alertmanager: could not send ${due.length} alert(s) to ${this.endpoint}: ${describeError(error)}${times > 1 ? ` (${times} failed attempts since the last line)` : ''}; retrying with backoff (said at most once a minute)`,
      );
      this.consecutiveFailures += 1;
      this.nextAttemptMs = Date.now() + backoffDelayMs(this.consecutiveFailures + 1, this.sendIntervalMs, MAX_BACKOFF_MS);
      return;
    }
    this.consecutiveFailures = 0;
    this.nextAttemptMs = 0;
    this.failures.succeeded(
      ({ times }) => `alertmanager: sending to ${this.endpoint} works again${times > 0 ? ` (after ${times} more failed attempt(s))` : ''}`,
    );
    this.stats.delivered += due.length;
    for (const { key, tracked, resolves } of due) {
      // A breach that arrived while the request was in flight keeps the alert firing.
      if (resolves && this.alerts.get(key) === tracked && Date.now() - tracked.lastBreachMs >= this.resolveAfterMs) this.alerts.delete(key);
      else {
        tracked.lastSentMs = now;
        tracked.changed = false;
      }
    }
  }
}
