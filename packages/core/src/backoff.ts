/**
 * Exponential backoff, the one schedule every sender here retries on (alert sinks, the
 * collector's downstream queues): the first retry waits `initialMs`, each next one twice as
 * long, never more than `maxMs`.
 */
export function backoffDelayMs(attempt: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
}

/** ±20 % random spread, so senders that failed together do not retry together. */
export function withJitter(ms: number, random: () => number = Math.random): number {
  return Math.round(ms * (0.8 + random() * 0.4));
}
