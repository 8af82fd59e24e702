/**
 * Fans breaches out to the configured sinks. `report` runs inside span.end() on the request
 * path: it only hands each breach to each sink's queue, and a sink that throws is skipped.
 */
import type { BreachReport } from '@request-budget/core';
import type { AlertSink, AlertSinkStats } from './alert-sink';

export interface AlertDispatcherOptions {
  /**
   * Runs each call into the sinks. The sinks start their timers and requests inside it, so a
   * caller that traces its process passes one that leaves the current trace (and suppresses
   * tracing): otherwise an alert's delivery would be recorded inside the request that breached.
   * @default runs the function as it is
   */
  readonly runDetached?: <T>(fn: () => T) => T;
}

export class AlertDispatcher {
  private readonly runDetached: <T>(fn: () => T) => T;

  constructor(
    readonly sinks: readonly AlertSink[],
    options: AlertDispatcherOptions = {},
  ) {
    this.runDetached = options.runDetached ?? ((fn) => fn());
  }

  report(reports: readonly BreachReport[]): void {
    this.runDetached(() => {
      for (const sink of this.sinks) {
        for (const report of reports) {
          try {
            sink.accept(report);
          } catch {
            // A sink's bug must not reach the app; its own stats show what it lost.
          }
        }
      }
    });
  }

  async flush(): Promise<void> {
    await this.runDetached(() => Promise.allSettled(this.sinks.map((sink) => sink.flush())));
  }

  async shutdown(): Promise<void> {
    await this.runDetached(() => Promise.allSettled(this.sinks.map((sink) => sink.shutdown())));
  }

  /** Each sink's counters, by sink name. */
  stats(): Record<string, Readonly<AlertSinkStats>> {
    return Object.fromEntries(this.sinks.map((sink) => [sink.name, sink.stats]));
  }
}
