/**
 * Bytes each request's own code allocates, under any concurrency.
 *
 * JavaScript runs one stretch at a time, and each stretch runs in one async context. The heap is
 * read whenever the owner of the running stretch changes — a callback or promise reaction of
 * another request starts (async_hooks `before`/`after`), a bound callback switches context
 * (`context.with`), a request's root opens or closes — and the growth since the last reading is
 * the previous owner's. A collection inside a stretch shrinks the heap: its freed bytes, known a
 * tick later (gc-freed-bytes.ts), are added back to whoever owned the stretch when it ran, by a
 * log of recent owner changes; for a request that has ended, to its route's estimate.
 *
 * Not attributed: stretches that start on a socket's read (a driver parsing rows on a pooled
 * connection would otherwise be charged to whichever request opened the connection), and code
 * outside every request.
 */
import { context, type Context, type ContextManager } from '@opentelemetry/api';
import { createHook, executionAsyncResource, type AsyncHook } from 'node:async_hooks';
import { getHeapStatistics } from 'node:v8';
import { describeError, reportProblem } from './diagnostics';
import { GcFreedBytes, type FreedBytes } from './gc-freed-bytes';
import type { RouteMemoryEstimates } from './memory-estimates';

/** The memory of one request or job, while it runs and until its last collection is known. */
export class AllocationAccount {
  /** Heap growth over the request's stretches, plus what collections inside them freed. */
  allocatedBytes = 0;
  /** Set when the request ends: collections known later go to this route's estimate. */
  route: string | undefined;
  /** The estimate's time bucket its figure was recorded in: a later collection corrects that one. */
  recordedIn = 0;
  /** Attribution stopped while the request ran (a sampling window closed): its figure is partial. */
  partial = false;
}

/** Owner changes remembered, to find who ran when a collection's entry arrives (a tick later). */
const OWNER_LOG_SIZE = 4096;
/** Nested callbacks deeper than this mean `after` hooks were lost (a callback threw): start over. */
const MAX_NESTING = 256;
/** Resources whose callbacks read a socket: their context is whoever opened the connection. */
const SOCKET_RESOURCES = new Set(['TCP', 'Pipe', 'TLSWrap', 'UDP']);

type WithFunction = ContextManager['with'];

/**
 * Bytes one owner change's reading allocates (the figures object of `getHeapStatistics`, the
 * clock values): the smallest heap growth over a reading in a few tries, none of them cut by a
 * collection. Each request would otherwise be charged it once per change, more under load.
 */
function readingAllocation(): number {
  let smallest = Infinity;
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = getHeapStatistics().used_heap_size;
    performance.now();
    const after = getHeapStatistics().used_heap_size;
    performance.now();
    if (after >= before) smallest = Math.min(smallest, after - before);
  }
  return Number.isFinite(smallest) ? smallest : 0;
}

export class MemoryAttribution {
  private owner: AllocationAccount | undefined;
  private usedAtLastChange = 0;
  private externalAtLastChange = 0;
  private readonly ownerChangedAtMs = new Float64Array(OWNER_LOG_SIZE);
  private readonly usedAtChange = new Float64Array(OWNER_LOG_SIZE);
  private readonly readUntilMs = new Float64Array(OWNER_LOG_SIZE);
  private readonly ownerLog: (AllocationAccount | undefined)[] = new Array(OWNER_LOG_SIZE);
  private logNext = 0;
  private logged = 0;
  private readonly nested: (AllocationAccount | undefined)[] = [];
  private hook: AsyncHook | undefined;
  private readonly gc: GcFreedBytes;
  private wrappedManager: ContextManager | undefined;
  private originalWith: WithFunction | undefined;
  private wrapper: WithFunction | undefined;
  private failureReported = false;
  private gcStopTimer: NodeJS.Timeout | undefined;
  /** What one reading allocates on the heap (measured at start), not charged to any request. */
  private readingBytes = 0;

  /**
   * @param accountOf the running request's account in a context (undefined outside requests
   *   and after a request ended)
   */
  constructor(
    private readonly accountOf: (context: Context) => AllocationAccount | undefined,
    private readonly estimates: RouteMemoryEstimates,
  ) {
    // Runs in a PerformanceObserver callback: a throw there would be the host app's uncaught exception.
    this.gc = new GcFreedBytes((freed) => {
      try {
        this.onFreed(freed);
      } catch (error) {
        this.reportFailure(error);
      }
    });
  }

  /** Whether owner changes are being followed (hooks on). */
  get active(): boolean {
    return this.hook !== undefined;
  }

  /** Starts following owner changes: async hooks on, collections recorded. */
  start(): void {
    if (this.hook !== undefined) return;
    this.readingBytes = readingAllocation();
    const statistics = getHeapStatistics();
    this.usedAtLastChange = statistics.used_heap_size;
    this.externalAtLastChange = statistics.external_memory;
    this.owner = undefined;
    this.nested.length = 0;
    this.hook = createHook({ before: () => this.before(), after: () => this.after() });
    this.hook.enable();
    this.gc.start();
  }

  /**
   * Stops following owner changes (async hooks cost every promise reaction while on). Collections
   * already run are still recorded for `gcGraceMs`: their entries arrive a tick or two late.
   */
  stop(gcGraceMs = 0): void {
    this.hook?.disable();
    this.hook = undefined;
    this.owner = undefined;
    if (gcGraceMs <= 0) this.gc.stop();
    else {
      clearTimeout(this.gcStopTimer);
      this.gcStopTimer = setTimeout(() => {
        if (this.hook === undefined) this.gc.stop();
      }, gcGraceMs).unref();
    }
  }

  /** Stops for good: hooks, collections and the context manager's wrapper. */
  shutdown(): void {
    this.stop();
    clearTimeout(this.gcStopTimer);
    // Left in place if another wrapper went on top since; a stopped wrapper only passes through.
    if (this.wrappedManager !== undefined && this.originalWith !== undefined && this.wrappedManager.with === this.wrapper)
      this.wrappedManager.with = this.originalWith;
    this.wrappedManager = undefined;
  }

  /**
   * A request's root opened. The owner changes when its code runs in its context (`context.with`,
   * a callback or reaction of it), not here: the rest of the running stretch is whoever runs it
   * (another request that started a job of its own, or none).
   */
  opened(): void {
    this.watchContextSwitches();
  }

  /**
   * A request's root is ending: takes its last growth and files its figure under its route.
   * Returns the bytes allocated as far as known now (never negative), or undefined when
   * attribution stopped while the request ran.
   */
  closed(account: AllocationAccount, route: string): number | undefined {
    if (this.hook !== undefined && this.owner === account) this.changeOwner(undefined);
    if (this.hook === undefined) account.partial = true;
    if (account.partial) return undefined;
    account.route = route;
    account.recordedIn = this.estimates.record(route, account.allocatedBytes);
    return Math.max(0, account.allocatedBytes);
  }

  /** Marks every account still open as partial: attribution is stopping under it. */
  abandon(account: AllocationAccount): void {
    account.partial = true;
  }

  private before(): void {
    try {
      if (this.nested.length >= MAX_NESTING) this.nested.length = 0;
      this.nested.push(this.owner);
      let next = this.accountOf(context.active());
      if (next !== undefined && SOCKET_RESOURCES.has((executionAsyncResource() as object | undefined)?.constructor?.name ?? '')) next = undefined;
      if (next !== this.owner) this.changeOwner(next);
    } catch (error) {
      this.reportFailure(error);
    }
  }

  private after(): void {
    try {
      const outer = this.nested.pop();
      // The outermost callback's owner stays until the next one starts: no reading in between.
      if (this.nested.length > 0 && outer !== this.owner) this.changeOwner(outer);
    } catch (error) {
      this.reportFailure(error);
    }
  }

  private changeOwner(next: AllocationAccount | undefined): void {
    // The time first: a collection set off by this reading's own allocation then falls after
    // the change, as its effect falls in the next owner's growth.
    const now = performance.now();
    const statistics = getHeapStatistics();
    const used = statistics.used_heap_size;
    const external = statistics.external_memory;
    // External memory (Buffer and ArrayBuffer contents) is released by a sweeper after the
    // collection, at no moment a record tells: only its growth counts, never its fall.
    // The last reading's own allocation (its figures object, its clock values) fell in this growth.
    if (this.owner !== undefined)
      this.owner.allocatedBytes += used - this.usedAtLastChange - this.readingBytes + Math.max(0, external - this.externalAtLastChange);
    this.usedAtLastChange = used;
    this.externalAtLastChange = external;
    // An ended request owns nothing more (a nested callback or a `with` returning to it): growth
    // or a collection after its figure was recorded would skew its route's estimate.
    if (next?.route !== undefined) next = undefined;
    this.owner = next;
    this.ownerChangedAtMs[this.logNext] = now;
    this.usedAtChange[this.logNext] = used;
    this.readUntilMs[this.logNext] = performance.now();
    this.ownerLog[this.logNext] = next;
    this.logNext = (this.logNext + 1) % OWNER_LOG_SIZE;
    if (this.logged < OWNER_LOG_SIZE) this.logged += 1;
  }

  /** A collection's freed bytes go to whoever owned the stretch it ran in. */
  private onFreed(freed: FreedBytes): void {
    const owner = this.ownerAt(freed);
    if (owner === undefined || owner.partial) return;
    const before = owner.allocatedBytes;
    owner.allocatedBytes += freed.bytes;
    if (owner.route !== undefined) this.estimates.correct(owner.route, owner.recordedIn, before, freed.bytes);
  }

  private ownerAt(freed: FreedBytes): AllocationAccount | undefined {
    // Newest first: the entry of a collection arrives within a tick or two of it.
    for (let step = 1; step <= this.logged; step++) {
      const index = (this.logNext - step + OWNER_LOG_SIZE) % OWNER_LOG_SIZE;
      const changedAt = this.ownerChangedAtMs[index];
      if (changedAt > freed.atMs) continue;
      // A collection set off while the change itself was being read (by the allocation of its
      // time or figures) fell before or after the heap was read: a reading near the heap after
      // the collection was taken after it, so the fall is in the previous owner's growth.
      if (freed.atMs <= this.readUntilMs[index] && step < this.logged) {
        const used = this.usedAtChange[index];
        if (Math.abs(used - freed.usedAfter) < Math.abs(used - (freed.usedAfter + freed.bytes))) {
          return this.ownerLog[(index - 1 + OWNER_LOG_SIZE) % OWNER_LOG_SIZE];
        }
      }
      return this.ownerLog[index];
    }
    return undefined;
  }

  /**
   * A callback bound to a request's context (`context.bind`, used by instrumentations for event
   * listeners and driver callbacks) runs inside another stretch: the context manager's `with`
   * is where its owner changes.
   */
  private watchContextSwitches(): void {
    // The global manager can be replaced (an app's own SDK started after request-budget's).
    const manager = (context as unknown as { _getContextManager?: () => ContextManager })._getContextManager?.();
    if (manager === undefined || manager === this.wrappedManager || typeof manager.with !== 'function') return;
    const originalWith = manager.with;
    this.wrappedManager = manager;
    this.originalWith = originalWith;

    const attribution = this;
    this.wrapper = function (this: ContextManager, ...args: Parameters<WithFunction>) {
      // Stopped, between sampling windows, or a manager no longer watched: a plain call.
      if (attribution.hook === undefined || attribution.wrappedManager !== this) return originalWith.apply(this, args);
      const outer = attribution.owner;
      let inner: AllocationAccount | undefined;
      try {
        inner = attribution.accountOf(args[0]);
      } catch (error) {
        // Not a context (a caller's bug the manager itself tolerates): never a throw of ours.
        attribution.reportFailure(error);
        return originalWith.apply(this, args);
      }
      if (inner === outer) return originalWith.apply(this, args);
      attribution.changeOwnerGuarded(inner);
      try {
        return originalWith.apply(this, args);
      } finally {
        attribution.changeOwnerGuarded(outer);
      }
    } as WithFunction;
    manager.with = this.wrapper;
  }

  private changeOwnerGuarded(next: AllocationAccount | undefined): void {
    try {
      this.changeOwner(next);
    } catch (error) {
      this.reportFailure(error);
    }
  }

  private reportFailure(error: unknown): void {
    if (this.failureReported) return;
    this.failureReported = true;
    reportProblem(`memory attribution failed and skipped a reading (reported once): ${describeError(error)}`);
  }
}
