/**
 * Says a sink's delivery failures on stderr without flooding it: the first failure at once,
 * then at most one line per interval, counting what failed since the line before; and one
 * line when delivery works again after a failure was said. A receiver that is down for an hour
 * costs about sixty lines, not one per attempt.
 */

/** Shortest time between two failure lines of one sink. */
export const FAILURE_REPORT_INTERVAL_MS = 60_000;

/** What failed since the last line: `amount` summed over `times` failures, this one included. */
export interface FailureTally {
  readonly amount: number;
  readonly times: number;
}

export class FailureReport {
  private amount = 0;
  private times = 0;
  private lastLineMs = -Infinity;
  /** A failure line went out since the last "works again" line. */
  private said = false;

  constructor(
    private readonly report: (message: string) => void,
    private readonly now: () => number = Date.now,
    private readonly intervalMs = FAILURE_REPORT_INTERVAL_MS,
  ) {}

  /** A failure of `amount` (alerts, breaches); `line` says it with the tally since the last line. */
  failed(amount: number, line: (tally: FailureTally) => string): void {
    this.amount += amount;
    this.times += 1;
    const now = this.now();
    if (now - this.lastLineMs < this.intervalMs) return;
    this.report(line({ amount: this.amount, times: this.times }));
    this.lastLineMs = now;
    this.amount = 0;
    this.times = 0;
    this.said = true;
  }

  /** A delivery succeeded: `line` is said when a failure was said before it, with what failed since. */
  succeeded(line: (unsaid: FailureTally) => string): void {
    if (!this.said) return;
    this.report(line({ amount: this.amount, times: this.times }));
    this.said = false;
    this.amount = 0;
    this.times = 0;
  }
}
