import type { BreachReport } from '@request-budget/core';

/** Counters every sink keeps about itself, for diagnostics, metrics and tests. */
export interface AlertSinkStats {
  /** Deliveries that succeeded (lines written, alerts or batches posted). */
  delivered: number;
  /** Delivery attempts that failed (each retry counts). */
  failed: number;
  /** Breaches given up on: queue full, or retries exhausted. */
  dropped: number;
}

/**
 * Where breaches go. `accept` runs on the request path (inside span.end): it must only queue.
 * Delivery happens on timers, off the request path.
 */
export interface AlertSink {
  readonly name: string;
  readonly stats: Readonly<AlertSinkStats>;
  accept(report: BreachReport): void;
  /** Delivers what is queued now. */
  flush(): Promise<void>;
  /** Delivers what is queued, then stops its timers. Safe to call twice. */
  shutdown(): Promise<void>;
}

export function emptyStats(): AlertSinkStats {
  return { delivered: 0, failed: 0, dropped: 0 };
}
