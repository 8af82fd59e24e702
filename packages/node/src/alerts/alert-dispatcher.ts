/**
 * Fans breaches out to the configured sinks. `report` runs inside span.end() on the request
 * path: it only hands each breach to each sink's queue, and a sink that throws is skipped.
 */
import type { BreachReport } from '@request-budget/core';
import type { AlertSink, AlertSinkStats } from './alert-sink';

export class AlertDispatcher {
  constructor(readonly sinks: readonly AlertSink[]) {}

  report(reports: readonly BreachReport[]): void {
    for (const sink of this.sinks) {
      for (const report of reports) {
        try {
          sink.accept(report);
        } catch {
          // A sink's bug must not reach the app; its own stats show what it lost.
        }
      }
    }
  }

  async flush(): Promise<void> {
    await Promise.allSettled(this.sinks.map((sink) => sink.flush()));
  }

  async shutdown(): Promise<void> {
    await Promise.allSettled(this.sinks.map((sink) => sink.shutdown()));
  }

  /** Each sink's counters, by sink name. */
  stats(): Record<string, Readonly<AlertSinkStats>> {
    return Object.fromEntries(this.sinks.map((sink) => [sink.name, sink.stats]));
  }
}
