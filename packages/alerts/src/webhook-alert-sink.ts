/**
 * Posts breaches to a webhook as JSON (`{"breaches": [ …breach events ]}`), in batches, with
 * retry and exponential backoff on network errors, timeouts, 408, 429 and 5xx. The queue is
 * bounded: breaches beyond it, and batches whose retries run out, are dropped and counted. Drops
 * are said with their cause: the first at once, then at most once a minute with the count since.
 */
import { backoffDelayMs, toBreachEvent, traceLink, type BreachReport } from '@request-budget/core';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeError } from './describe-error';
import { emptyStats, type AlertSink } from './alert-sink';
import { FailureReport } from './failure-report';

export interface WebhookAlertSinkOptions {
  readonly url: string;
  readonly headers?: Record<string, string>;
  /** @default 1000 */
  readonly maxQueued?: number;
  /** @default 50 */
  readonly batchSize?: number;
  /** Attempts per batch, the first included. @default 5 */
  readonly maxAttempts?: number;
  /** Wait before the first retry; doubles each time up to 30 s. @default 500 */
  readonly initialBackoffMs?: number;
  /** @default 5000 */
  readonly requestTimeoutMs?: number;
  /**
   * Template of a link to one trace, e.g. `http://jaeger:16686/trace/{traceId}`: each breach
   * event gets `trace_url`, the link to its trace. @default none
   */
  readonly traceUrl?: string;
  /** Where drops are said: the first at once, then at most once a minute. */
  readonly reportProblem: (message: string) => void;
  /** @default Date.now (tests pass their own clock) */
  readonly now?: () => number;
}

const MAX_BACKOFF_MS = 30_000;

export class WebhookAlertSink implements AlertSink {
  readonly name = 'webhook';
  readonly stats = emptyStats();
  private readonly options: Required<Omit<WebhookAlertSinkOptions, 'headers' | 'traceUrl' | 'now'>> & { headers: Record<string, string> };
  private readonly traceUrl: string | undefined;
  private readonly failures: FailureReport;
  private queue: BreachReport[] = [];
  private draining: Promise<void> | undefined;
  private stopping = false;

  constructor(options: WebhookAlertSinkOptions) {
    this.options = {
      maxQueued: 1000,
      batchSize: 50,
      maxAttempts: 5,
      initialBackoffMs: 500,
      requestTimeoutMs: 5000,
      ...options,
      headers: { 'content-type': 'application/json', ...options.headers },
    };
    this.traceUrl = options.traceUrl;
    this.failures = new FailureReport(options.reportProblem, options.now);
  }

  get queued(): number {
    return this.queue.length;
  }

  accept(report: BreachReport): void {
    if (this.queue.length >= this.options.maxQueued) {
      this.stats.dropped += 1;
      return;
    }
    this.queue.push(report);
    // Off the request path: the drain starts on a later turn of the event loop.
    if (this.draining === undefined) this.draining = sleep(0, undefined, { ref: false }).then(() => this.drain());
  }

  async flush(): Promise<void> {
    while (this.draining !== undefined) await this.draining;
    if (this.queue.length > 0) {
      this.draining = this.drain();
      await this.draining;
    }
  }

  async shutdown(): Promise<void> {
    this.stopping = true;
    await this.flush();
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.options.batchSize);
        const problem = await this.deliver(batch);
        if (problem === undefined) {
          this.stats.delivered += 1;
          this.failures.succeeded(
            ({ amount }) => `webhook: posting to ${this.options.url} works again${amount > 0 ? ` (${amount} more breach(es) dropped before)` : ''}`,
          );
        } else {
          this.stats.dropped += batch.length;
          this.failures.failed(
            batch.length,
            ({ amount, times }) =>
              `webhook: dropped ${amount} breach(es)${times > 1 ? ` in ${times} batches since the last line` : ''} after failing to post to ${this.options.url}: ${problem} (said at most once a minute)`,
          );
        }
      }
    } finally {
      this.draining = undefined;
    }
  }

  /** Undefined when delivered; what went wrong last when given up on. */
  private async deliver(batch: BreachReport[]): Promise<string | undefined> {
    const { traceUrl } = this;
    const body = JSON.stringify({
      breaches: batch.map((report) => toBreachEvent(report, traceUrl !== undefined ? traceLink(traceUrl, report.traceId) : undefined)),
    });
    // When shutting down, one attempt each: shutdown must not wait out a backoff.
    const attempts = this.stopping ? 1 : this.options.maxAttempts;
    let lastProblem = '';
    for (let attempt = 1; attempt <= attempts; attempt += 1) {
      try {
        const response = await fetch(this.options.url, {
          method: 'POST',
          headers: this.options.headers,
          body,
          signal: AbortSignal.timeout(this.options.requestTimeoutMs),
        });
        await response.body?.cancel();
        if (response.ok) return undefined;
        lastProblem = `HTTP ${response.status}`;
        if (!isRetryableStatus(response.status)) {
          this.stats.failed += 1;
          break;
        }
      } catch (error) {
        lastProblem = describeError(error);
      }
      this.stats.failed += 1;
      if (attempt < attempts && !this.stopping) {
        await sleep(backoffDelayMs(attempt, this.options.initialBackoffMs, MAX_BACKOFF_MS), undefined, { ref: false });
      }
    }
    return lastProblem;
  }
}

function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}
