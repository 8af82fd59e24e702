/**
 * A problem that repeats, logged the first time at once and then once per interval while it goes
 * on, with what it amounted to: a downstream refusing every batch must not write a line per batch.
 */
export interface IntervalTally {
  /** Times reported since the last line. */
  readonly times: number;
  /** Sum of the amounts reported since the last line (spans, usually). */
  readonly amount: number;
}

interface Streak {
  times: number;
  amount: number;
  summary: (tally: IntervalTally) => string;
  timer: NodeJS.Timeout;
}

export class IntervalLog {
  private readonly streaks = new Map<string, Streak>();

  constructor(
    private readonly log: (message: string) => void,
    private readonly intervalMs: number,
  ) {}

  /** `first` is logged when `key` starts a streak; later reports are summed into `summary` at the interval's end. */
  report(key: string, amount: number, first: string, summary: (tally: IntervalTally) => string): void {
    const streak = this.streaks.get(key);
    if (streak !== undefined) {
      streak.times += 1;
      streak.amount += amount;
      streak.summary = summary;
      return;
    }
    this.log(first);
    this.streaks.set(key, { times: 0, amount: 0, summary, timer: this.endOfInterval(key) });
  }

  /** Logs what is pending now (at shutdown) and ends every streak. */
  flush(): void {
    for (const [key, streak] of this.streaks) {
      clearTimeout(streak.timer);
      if (streak.times > 0) this.log(streak.summary(streak));
      this.streaks.delete(key);
    }
  }

  private endOfInterval(key: string): NodeJS.Timeout {
    return setTimeout(() => {
      const streak = this.streaks.get(key);
      if (streak === undefined) return;
      if (streak.times === 0) {
        this.streaks.delete(key); // over: the next report is a new streak, logged at once
        return;
      }
      this.log(streak.summary(streak));
      streak.times = 0;
      streak.amount = 0;
      streak.timer = this.endOfInterval(key);
    }, this.intervalMs).unref();
  }
}
