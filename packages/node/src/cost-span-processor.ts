/**
 * CostSpanProcessor: attributes every DB operation and outgoing HTTP call to the local root span
 * (the SERVER span of the request, or a job span) it happened under, and writes the cost record
 * onto that root while it is still writable (`onEnding`).
 *
 * The running tally lives on the root span object itself, under a symbol: a child finds it
 * through the parent span in its start context. There is no process-wide map to grow or to
 * sweep, and a tally is freed with its span.
 */
import { SpanKind, trace, type Attributes, type Context } from '@opentelemetry/api';
import { hrTimeToMilliseconds } from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import {
  COST_GC_COUNT,
  COST_GC_TIME_MS,
  COST_HEAP_CONFIDENCE,
  COST_HEAP_DELTA_BYTES,
  COST_HEAP_IN_FLIGHT,
  COST_MEMORY_ALLOCATED_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES,
  CostTally,
  FingerprintCache,
  classifySpan,
  enqueuedMessages,
  heapConfidence,
  isEnqueueSpan,
  roundMs,
  routePartsOf,
  type RepeatedStatement,
  type SpanKindName,
} from '@request-budget/core';
import { describeError, reportProblem } from './diagnostics';
import { DuplicateOperations } from './duplicate-operations';
import { GcMonitor } from './gc-monitor';
import { LightSpan, type LightSpanSink } from './light-span';
import { HeapProbe } from './heap-probe';
import { markLateOperation } from './late-operations';
import { MemoryAttribution, type AllocationAccount } from './memory-attribution';
import { RouteMemoryEstimates, type MemoryEstimatesOptions } from './memory-estimates';
import { MemoryWindows, type MemorySamplingOptions } from './memory-windows';
import { noteModulesLoadedAtStart, notifyRootStarted, notifySpanEnded } from './measurement-registry';

// Makes a span a root of its own even inside a request (jobs, measurements); defined with the
// attribute contract, re-exported here for existing imports.
import { ROOT_MARKER_ATTRIBUTE } from '@request-budget/core';
export { ROOT_MARKER_ATTRIBUTE };

/** What a root span carries while it runs. */
interface RootState {
  /** The processor that opened it: a second CostSpanProcessor leaves it alone. */
  readonly owner: CostSpanProcessor;
  readonly root: Span;
  readonly tally: CostTally;
  readonly heapAtStart: number;
  readonly gcCountAtStart: number;
  readonly gcTimeAtStart: number;
  readonly fullCollectionsAtStart: number;
  /** Value of the processor's root start counter when this root started. */
  readonly startSequence: number;
  /** Roots in flight right after this one started, itself included. */
  readonly inFlightAtStart: number;
  /** Bytes its own code allocates, when memory attribution is on. */
  readonly memory: AllocationAccount | undefined;
  ended: boolean;
}

export interface CostSpanProcessorOptions {
  /**
   * Attribute the bytes each request's own code allocates (`cost.memory.*`), whatever runs
   * beside it: async hooks and a heap reading whenever the running request changes, in sampling
   * windows (memory-windows.ts).
   * @default true
   */
  readonly memoryAttribution?: boolean;
  /** When requests are measured. @default 5% of the time, in windows of 1 s */
  readonly memorySampling?: MemorySamplingOptions;
  /** How each route's estimate of memory per request is averaged. */
  readonly memoryEstimates?: MemoryEstimatesOptions;
}

const ROOT_STATE = Symbol('request-budget.root-state');
// Set on spans started beneath an enqueue span (see core's enqueue-classifier.ts): the queue
// library's own work to enqueue, counted as the enqueue and not as queries or calls.
const UNDER_ENQUEUE = Symbol('request-budget.under-enqueue');
type TrackedSpan = { [ROOT_STATE]?: RootState; [UNDER_ENQUEUE]?: true };

const KIND_NAMES: Record<SpanKind, SpanKindName> = {
  [SpanKind.INTERNAL]: 'internal',
  [SpanKind.SERVER]: 'server',
  [SpanKind.CLIENT]: 'client',
  [SpanKind.PRODUCER]: 'producer',
  [SpanKind.CONSUMER]: 'consumer',
};

export class CostSpanProcessor implements SpanProcessor, LightSpanSink {
  private readonly fingerprints = new FingerprintCache();
  private readonly gc = new GcMonitor();
  private readonly heap = new HeapProbe();
  // A root that is never ended must not count as in flight forever: when its span is
  // garbage-collected, it is taken out of the in-flight count.
  private readonly unendedRoots = new FinalizationRegistry<void>(() => {
    this.rootsInFlight -= 1;
  });
  private rootsStarted = 0;
  private rootsInFlight = 0;
  private hookFailureReported = false;
  // One operation reported by two spans (an ORM's over its driver's, two instrumentations) counts once.
  private readonly duplicates = new DuplicateOperations();
  // Late light spans reach no other processor by themselves: those that count late operations.
  private lateListeners: readonly SpanProcessor[] = [];
  private readonly memoryEstimates: RouteMemoryEstimates | undefined;
  private readonly memory: MemoryWindows | undefined;

  constructor(options: CostSpanProcessorOptions = {}) {
    this.gc.start();
    noteModulesLoadedAtStart();
    if (options.memoryAttribution !== false) {
      this.memoryEstimates = new RouteMemoryEstimates(options.memoryEstimates);
      this.memory = new MemoryWindows(new MemoryAttribution((active) => accountOf(active, this), this.memoryEstimates), options.memorySampling);
      this.memory.start();
    }
  }

  /**
   * Processors that count late operations (metrics, summary lines): light spans (light-span.ts)
   * reach only this processor, so a late one is handed on to them.
   */
  forwardLateLightSpansTo(listeners: readonly SpanProcessor[]): void {
    this.lateListeners = listeners;
  }

  /** Roots started and not yet ended (or collected). Exposed for tests and metrics. */
  get inFlight(): number {
    return this.rootsInFlight;
  }

  onStart(span: Span, parentContext: Context): void {
    try {
      const tracked = span as Span & TrackedSpan;
      if (tracked[ROOT_STATE] !== undefined) return; // attributed by another instance already
      const parent = trace.getSpan(parentContext) as (TrackedSpan & object) | undefined;
      const parentState = parent?.[ROOT_STATE];
      // Marked roots (jobs, measurements) and messages a consumer received are roots of their own
      // even inside a request: a message is processed for its queue, not for whoever was running.
      if (span.attributes[ROOT_MARKER_ATTRIBUTE] === true || span.kind === SpanKind.CONSUMER) {
        tracked[ROOT_STATE] = this.openRoot(span);
      } else if (parentState !== undefined && !parentState.ended) {
        tracked[ROOT_STATE] = parentState;
      } else if (span.kind === SpanKind.SERVER) {
        tracked[ROOT_STATE] = this.openRoot(span);
      } else if (parentState !== undefined) {
        // Started after its request ended (a timer, an un-awaited call): a late operation.
        tracked[ROOT_STATE] = parentState;
      }
      if (tracked[ROOT_STATE]?.root === span) notifyRootStarted(span);
      else if (tracked[ROOT_STATE] !== undefined) {
        if (parent !== undefined && (parent[UNDER_ENQUEUE] === true || isEnqueueSpanObject(parent))) tracked[UNDER_ENQUEUE] = true;
        this.duplicates.onStart(span, KIND_NAMES[span.kind], parent);
      }
    } catch (error) {
      this.reportHookFailure('onStart', error);
    }
  }

  onEnding(span: Span): void {
    try {
      const state = (span as Span & TrackedSpan)[ROOT_STATE];
      if (state === undefined || state.owner !== this || state.root !== span || state.ended) return;
      this.closeRoot(state);
    } catch (error) {
      this.reportHookFailure('onEnding', error);
    }
  }

  onEnd(span: ReadableSpan): void {
    try {
      const state = (span as ReadableSpan & TrackedSpan)[ROOT_STATE];
      if (state === undefined || state.owner !== this) return;
      // The root itself (closed in onEnding): only observers (measureCost, CI baseline) want it.
      if ((span as unknown) === state.root) return notifySpanEnded(span, state.root);
      if ((span as ReadableSpan & TrackedSpan)[UNDER_ENQUEUE] === true) return;
      const enqueued = enqueuedMessages(KIND_NAMES[span.kind], span.attributes);
      if (enqueued !== undefined) {
        if (!state.ended) state.tally.addEnqueued(enqueued);
        return;
      }
      const contribution = this.duplicates.admit(span, classifySpan(KIND_NAMES[span.kind], span.name, span.attributes));
      // Ended after its root: too late for the cost record, counted per route by the others.
      if (state.ended) {
        if (contribution === undefined) return;
        markLateOperation(span, state.root, contribution);
        if (span instanceof LightSpan) for (const listener of this.lateListeners) listener.onEnd(span);
        return;
      }
      if (contribution !== undefined) state.tally.add(contribution, hrTimeToMilliseconds(span.duration));
      notifySpanEnded(span, state.root);
    } catch (error) {
      this.reportHookFailure('onEnd', error);
    }
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    this.gc.stop();
    this.memory?.shutdown();
    return Promise.resolve();
  }

  private openRoot(root: Span): RootState {
    this.rootsStarted += 1;
    this.rootsInFlight += 1;
    this.unendedRoots.register(root, undefined, root);
    const memory = this.memory?.admit();
    return {
      owner: this,
      root,
      tally: new CostTally(this.fingerprints),
      heapAtStart: this.heap.usedBytes(this.rootsInFlight > 1),
      gcCountAtStart: this.gc.count,
      gcTimeAtStart: this.gc.timeMs,
      fullCollectionsAtStart: this.gc.fullCollectionsSeen(),
      startSequence: this.rootsStarted,
      inFlightAtStart: this.rootsInFlight,
      memory,
      ended: false,
    };
  }

  private closeRoot(state: RootState): void {
    state.ended = true;
    this.rootsInFlight -= 1;
    this.unendedRoots.unregister(state.root);
    // Every root that started after this one overlapped it, as did every root in flight when
    // it started: together, the requests whose allocations share this heap delta.
    const overlapping = state.inFlightAtStart + (this.rootsStarted - state.startSequence);
    const gcCount = this.gc.count - state.gcCountAtStart;
    const heapDelta = this.heap.usedBytes(overlapping > 1) - state.heapAtStart;
    // A shrinking heap proves a collection even when its GC entry has not arrived yet.
    const gcRan = gcCount > 0 || this.gc.fullCollectionsSeen() > state.fullCollectionsAtStart || heapDelta < 0;
    const root = state.root;
    state.tally.writeAttributes(root);
    root.setAttribute(COST_HEAP_DELTA_BYTES, heapDelta);
    root.setAttribute(COST_HEAP_IN_FLIGHT, overlapping);
    root.setAttribute(COST_HEAP_CONFIDENCE, heapConfidence(overlapping, gcRan));
    root.setAttribute(COST_GC_COUNT, gcCount);
    root.setAttribute(COST_GC_TIME_MS, roundMs(this.gc.timeMs - state.gcTimeAtStart));
    if (this.memory !== undefined && this.memoryEstimates !== undefined) {
      const route = memoryRouteOf(root.attributes);
      // The route's estimate before this request joins it: what the route costs, not this one.
      const estimate = this.memoryEstimates.estimate(route);
      const own = state.memory === undefined ? undefined : this.memory.close(state.memory, route);
      if (own !== undefined) root.setAttribute(COST_MEMORY_ALLOCATED_BYTES, own);
      if (estimate !== undefined) {
        root.setAttribute(COST_MEMORY_ROUTE_ESTIMATE_BYTES, estimate.meanBytes);
        root.setAttribute(COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES, estimate.errorBytes);
      }
    }
  }

  private reportHookFailure(hook: string, error: unknown): void {
    if (this.hookFailureReported) return;
    this.hookFailureReported = true;
    reportProblem(`cost attribution failed in ${hook} and skipped that span (reported once): ${describeError(error)}`);
  }
}

/** The key a root's memory estimate is kept under: its job, or its method and route template. */
function memoryRouteOf(attributes: Attributes): string {
  const { job, method, template } = routePartsOf(attributes);
  return job !== undefined ? `job ${job}` : `${method ?? 'ANY'} ${template ?? ''}`;
}

/** The running root's memory account in a context, for memory attribution. */
function accountOf(active: Context, owner: CostSpanProcessor): AllocationAccount | undefined {
  const state = (trace.getSpan(active) as (TrackedSpan & object) | undefined)?.[ROOT_STATE];
  return state === undefined || state.ended || state.owner !== owner ? undefined : state.memory;
}

/** Whether a parent span object (an SDK span, read through its public fields) is an enqueue span. */
function isEnqueueSpanObject(parent: object): boolean {
  const { kind, attributes } = parent as Partial<ReadableSpan>;
  return kind !== undefined && attributes !== undefined && isEnqueueSpan(KIND_NAMES[kind], attributes);
}

/** The local root (request or job span) a span was attributed to, whether it has ended, and who attributed it. */
export function attributionOf(span: object): { readonly root: Span; readonly rootEnded: boolean; readonly sink: LightSpanSink } | undefined {
  const state = (span as TrackedSpan)[ROOT_STATE];
  return state === undefined ? undefined : { root: state.root, rootEnded: state.ended, sink: state.owner };
}

/** Every statement fingerprint of a root's tally with its count, most repeated first. */
export function costStatementsOf(root: object): RepeatedStatement[] | undefined {
  const state = (root as TrackedSpan)[ROOT_STATE];
  return state?.root === root ? state.tally.statements() : undefined;
}
