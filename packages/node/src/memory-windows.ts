/**
 * When memory attribution runs. Its async hooks cost every promise reaction of every request
 * while they are on (+22% instructions per request on the benchmark's 3-query route), so by
 * default it runs in sampling windows: a window opens with the first request at least
 * `windowMs / ratio` after the last one opened (so the first request of a process opens one),
 * admits the requests that start for `windowMs`, and keeps the hooks on until those have ended
 * (at most `maxWindowMs`). Every request, measured or not, carries its route's estimate, which is
 * what a memory budget is judged on under load.
 */
import { AllocationAccount, type MemoryAttribution } from './memory-attribution';

export interface MemorySamplingOptions {
  /** Share of the time requests are measured, 0 < ratio ≤ 1; 1 measures every request. @default 0.05 */
  readonly ratio?: number;
  /** How long each window admits requests. @default 1000 */
  readonly windowMs?: number;
  /** How long a window stays open for the requests it admitted, at most: longer ones go unmeasured. @default 10_000 */
  readonly maxWindowMs?: number;
}

export const MEMORY_SAMPLING_DEFAULTS = { ratio: 0.05, windowMs: 1000, maxWindowMs: 10_000 } as const;

/** Collections of a closed window are still recorded this long: their entries arrive late. */
const GC_GRACE_MS = 250;
/** Longest delay setTimeout takes; beyond, Node fires after 1 ms (a tiny ratio would measure all the time). */
const MAX_TIMER_MS = 2_147_483_647;

/** An account and the window it was admitted in. */
interface WindowedAccount extends AllocationAccount {
  window?: number;
}

export class MemoryWindows {
  private readonly ratio: number;
  private readonly windowMs: number;
  private readonly maxWindowMs: number;
  private admitting = false;
  /** Serial number of the current (or last) window: an account from another one is partial. */
  private window = 0;
  private openAccounts = 0;
  private openedAtMs = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly attribution: MemoryAttribution,
    options: MemorySamplingOptions = {},
  ) {
    this.ratio = Math.min(1, options.ratio ?? MEMORY_SAMPLING_DEFAULTS.ratio);
    this.windowMs = Math.max(1, options.windowMs ?? MEMORY_SAMPLING_DEFAULTS.windowMs);
    this.maxWindowMs = Math.max(this.windowMs, options.maxWindowMs ?? MEMORY_SAMPLING_DEFAULTS.maxWindowMs);
  }

  /** With ratio 1, measures for good from now; otherwise the first request opens a window. */
  start(): void {
    if (this.ratio >= 1) this.openWindow();
  }

  shutdown(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.admitting = false;
    this.attribution.shutdown();
  }

  /** An account for a request starting now, or undefined outside a window. */
  admit(): AllocationAccount | undefined {
    if (!this.admitting) {
      // Windows open on demand: an idle process measures nothing and pays nothing.
      if (this.stopped || this.ratio <= 0 || this.attribution.active || performance.now() - this.openedAtMs < this.windowMs / this.ratio) return undefined;
      this.openWindow();
    }
    const account: WindowedAccount = new AllocationAccount();
    account.window = this.window;
    this.openAccounts += 1;
    this.attribution.opened();
    return account;
  }

  /** The request of `account` ended: its bytes, or undefined when its window closed under it. */
  close(account: AllocationAccount, route: string): number | undefined {
    const windowed = account as WindowedAccount;
    const current = windowed.window === this.window && this.attribution.active;
    if (current) this.openAccounts -= 1;
    else this.attribution.abandon(account);
    const bytes = this.attribution.closed(account, route);
    if (current && !this.admitting && this.openAccounts <= 0) this.closeWindow();
    return bytes;
  }

  private openWindow(): void {
    if (this.stopped) return;
    this.window += 1;
    this.openAccounts = 0;
    this.openedAtMs = performance.now();
    this.attribution.start();
    this.admitting = true;
    if (this.ratio >= 1) return;
    this.schedule(() => this.stopAdmitting(), this.windowMs);
  }

  private stopAdmitting(): void {
    this.admitting = false;
    if (this.openAccounts <= 0) this.closeWindow();
    else this.schedule(() => this.closeWindow(), this.maxWindowMs - this.windowMs);
  }

  private closeWindow(): void {
    if (!this.attribution.active || this.admitting) return;
    clearTimeout(this.timer);
    this.attribution.stop(GC_GRACE_MS);
  }

  private schedule(action: () => void, delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(action, Math.min(delayMs, MAX_TIMER_MS));
    this.timer.unref();
  }
}
