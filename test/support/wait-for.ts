/** Waiting until a list that grows (e.g. the spans a receiver has accepted) satisfies a predicate. */

/** Options for {@link ListWaiters.waitFor}. */
export interface WaitForOptions {
  /** Give up after this long (default 5000 ms). */
  timeoutMs?: number;
}

/** The pending waits on one list; see {@link waitersFor}. */
export interface ListWaiters<T> {
  /**
   * Resolve with a snapshot of the list once `predicate(items)` returns true (checked now and at
   * every {@link recheck}). A predicate that throws counts as "not yet", so `expect(...)` can be
   * used inside it. Rejects on timeout with the owner's summary and the predicate's last error.
   */
  waitFor(predicate: (items: readonly T[]) => boolean, options?: WaitForOptions): Promise<T[]>;
  /** Check every pending wait again; call it after the list grew. */
  recheck(): void;
  /** Reject every pending wait with `message` (e.g. when the owner closes). */
  rejectAll(message: string): void;
}

/** Waits on `items`, a live list; `summary()` describes what was received, for timeout errors. */
export function waitersFor<T>(items: readonly T[], summary: () => string): ListWaiters<T> {
  const waiters = new Set<{ check: () => void; fail: (err: Error) => void }>();

  function waitFor(predicate: (items: readonly T[]) => boolean, { timeoutMs = 5000 }: WaitForOptions = {}): Promise<T[]> {
    return new Promise<T[]>((resolve, reject) => {
      let lastError: unknown;
      const waiter = {
        check() {
          try {
            if (!predicate(items)) return;
          } catch (err) {
            lastError = err;
            return;
          }
          finish();
          resolve([...items]);
        },
        fail(err: Error) {
          finish();
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        const why = lastError instanceof Error ? `\nlast predicate error: ${lastError.message}` : '';
        waiter.fail(new Error(`waitFor timed out after ${timeoutMs} ms; ${summary()}${why}`));
      }, timeoutMs);
      function finish() {
        clearTimeout(timer);
        waiters.delete(waiter);
      }
      waiters.add(waiter);
      waiter.check();
    });
  }

  return {
    waitFor,
    recheck() {
      for (const waiter of [...waiters]) waiter.check();
    },
    rejectAll(message) {
      for (const waiter of [...waiters]) waiter.fail(new Error(message));
    },
  };
}
