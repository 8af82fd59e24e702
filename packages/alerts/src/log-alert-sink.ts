/**
 * One structured JSON line per breach (`{"event":"budget.breach",...}`), written in batches on a
 * timer so the request path never waits on the stream.
 */
import { toBreachEvent, traceLink, type BreachReport } from '@request-budget/core';
import { emptyStats, type AlertSink } from './alert-sink';

export interface LogAlertSinkOptions {
  /** @default writes to process.stderr */
  readonly write?: (text: string) => void;
  /** @default 200 */
  readonly flushIntervalMs?: number;
  /** Lines waiting before new ones are dropped. @default 1000 */
  readonly maxQueued?: number;
  /**
   * Template of a link to one trace, e.g. `http://jaeger:16686/trace/{traceId}`: each line gets
   * `trace_url`, the link to its trace. @default none
   */
  readonly traceUrl?: string;
}

export class LogAlertSink implements AlertSink {
  readonly name = 'log';
  readonly stats = emptyStats();
  private readonly write: (text: string) => void;
  private readonly flushIntervalMs: number;
  private readonly maxQueued: number;
  private readonly traceUrl: string | undefined;
  private queued: string[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(options: LogAlertSinkOptions = {}) {
    this.write = options.write ?? ((text) => process.stderr.write(text));
    this.flushIntervalMs = options.flushIntervalMs ?? 200;
    this.maxQueued = options.maxQueued ?? 1000;
    this.traceUrl = options.traceUrl;
  }

  accept(report: BreachReport): void {
    if (this.queued.length >= this.maxQueued) {
      this.stats.dropped += 1;
      return;
    }
    const traceUrl = this.traceUrl !== undefined ? traceLink(this.traceUrl, report.traceId) : undefined;
    this.queued.push(`${JSON.stringify(toBreachEvent(report, traceUrl))}\n`);
    this.timer ??= setTimeout(() => void this.flush(), this.flushIntervalMs).unref();
  }

  flush(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const lines = this.queued;
    this.queued = [];
    if (lines.length === 0) return Promise.resolve();
    try {
      this.write(lines.join(''));
      this.stats.delivered += lines.length;
    } catch {
      this.stats.failed += 1;
      this.stats.dropped += lines.length;
    }
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return this.flush();
  }
}
