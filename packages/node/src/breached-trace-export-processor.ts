/**
 * Wraps the export pipeline so that a request that breached its budget is exported even when
 * the sampler dropped it. Sampled spans pass straight through. Of an unsampled request:
 * - `detail: 'root'` (the default): its root span, with the cost record, violations and breach
 *   events, under the trace and span ids already propagated downstream. Its queries and calls
 *   were light spans (light-children.ts), never recorded.
 * - `detail: 'trace'`: its whole trace. Every span of an unsampled request is then recorded and
 *   held here until its root ends; a breached request's spans are handed to the exporters, at
 *   most `wholeTracesPerMinute` traces a minute (past it, the root alone), the rest let go.
 *
 * Exported spans are plain copies marked sampled (the batch processors export sampled spans
 * only): serialising them costs what an SDK span's does.
 *
 * Memory: at most `maxSpansPerTrace` spans held per request in flight; further ones are counted
 * as dropped. Held spans are keyed weakly by their root, so a root that never ends frees them.
 */
import { TraceFlags, type Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { BUDGET_BREACHED } from '@request-budget/core';
import { DEFAULTS, type BreachedTraceDetail } from './config';
import { attributionOf } from './cost-span-processor';
import { reportProblem } from './diagnostics';

export interface BreachedTraceExportOptions {
  /** @default 'root' */
  readonly detail?: BreachedTraceDetail;
  /** Whole traces exported per minute at most, with `detail: 'trace'`. @default 60 */
  readonly wholeTracesPerMinute?: number;
  /** Spans held per unsampled request, with `detail: 'trace'`. @default 256 */
  readonly maxSpansPerTrace?: number;
  /** @default Date.now */
  readonly now?: () => number;
}

export class BreachedTraceExportProcessor implements SpanProcessor {
  private readonly detail: BreachedTraceDetail;
  private readonly maxSpansPerTrace: number;
  private readonly wholeTraces: TokenBucket;
  private readonly held = new WeakMap<Span, Held>();
  private rateReported = false;
  private truncationReported = false;
  /** Spans of breached, unsampled requests left out of their exported trace: past the hold. */
  droppedSpans = 0;
  /** Breached traces exported as their root alone because the whole-trace rate was reached. */
  rootOnlyTraces = 0;

  /** @param exporters the export processors (one batch processor per exporter) */
  constructor(
    private readonly exporters: readonly SpanProcessor[],
    options: BreachedTraceExportOptions = {},
  ) {
    this.detail = options.detail ?? DEFAULTS.breachedTraceDetail;
    this.maxSpansPerTrace = options.maxSpansPerTrace ?? 256;
    this.wholeTraces = new TokenBucket(options.wholeTracesPerMinute ?? DEFAULTS.wholeBreachedTracesPerMinute, options.now ?? Date.now);
  }

  onStart(span: Span, parentContext: Context): void {
    for (const exporter of this.exporters) exporter.onStart(span, parentContext);
  }

  onEnding(span: Span): void {
    for (const exporter of this.exporters) exporter.onEnding?.(span);
  }

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0) {
      this.export(span);
      return;
    }
    const attribution = attributionOf(span);
    if (attribution === undefined) return;
    const { root, rootEnded } = attribution;
    if (root === span) {
      const held = this.held.get(root);
      this.held.delete(root);
      if (span.attributes[BUDGET_BREACHED] !== true) return;
      if (held !== undefined) {
        if (this.wholeTraces.take()) {
          for (const child of held.spans) this.export(sampledCopy(child));
          if (held.dropped > 0) this.truncated(held.dropped);
        } else this.rateReached();
      }
      this.export(sampledCopy(span));
      return;
    }
    if (this.detail === 'root' || rootEnded) return; // not held; or ended after its request: decided
    let held = this.held.get(root);
    if (held === undefined) this.held.set(root, (held = { spans: [], dropped: 0 }));
    if (held.spans.length < this.maxSpansPerTrace) held.spans.push(span);
    else held.dropped += 1;
  }

  async forceFlush(): Promise<void> {
    await Promise.all(this.exporters.map((exporter) => exporter.forceFlush()));
  }

  async shutdown(): Promise<void> {
    await Promise.all(this.exporters.map((exporter) => exporter.shutdown()));
  }

  private export(span: ReadableSpan): void {
    for (const exporter of this.exporters) exporter.onEnd(span);
  }

  private truncated(dropped: number): void {
    this.droppedSpans += dropped;
    if (this.truncationReported) return;
    this.truncationReported = true;
    reportProblem(
      `a breached request had more than ${this.maxSpansPerTrace} spans: its trace was exported with its first ${this.maxSpansPerTrace} and its root, ${dropped} left out (reported once; counted in droppedSpans)`,
    );
  }

  private rateReached(): void {
    this.rootOnlyTraces += 1;
    if (this.rateReported) return;
    this.rateReported = true;
    reportProblem(
      `more breached requests than REQUEST_BUDGET_EXPORT_BREACHED_TRACES_PER_MINUTE (${this.wholeTraces.perMinute}) wanted their whole trace exported: past that rate, a breached request's root span is exported alone (reported once)`,
    );
  }
}

/** An unsampled request's spans held until its root is judged, and how many did not fit. */
interface Held {
  readonly spans: ReadableSpan[];
  dropped: number;
}

/** At most `perMinute` takes a minute, refilled continuously. */
class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly perMinute: number,
    private readonly now: () => number,
  ) {
    this.tokens = perMinute;
    this.last = now();
  }

  take(): boolean {
    const now = this.now();
    // A clock stepped back refills nothing (and takes nothing away).
    this.tokens = Math.min(this.perMinute, this.tokens + (Math.max(0, now - this.last) * this.perMinute) / 60_000);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** A plain copy of an ended span whose context says sampled, which the batch processors export. */
export function sampledCopy(span: ReadableSpan): ReadableSpan {
  const context = span.spanContext();
  const sampledContext = { ...context, traceFlags: context.traceFlags | TraceFlags.SAMPLED };
  return {
    name: span.name,
    kind: span.kind,
    spanContext: () => sampledContext,
    parentSpanContext: span.parentSpanContext,
    startTime: span.startTime,
    endTime: span.endTime,
    status: span.status,
    attributes: span.attributes,
    links: span.links,
    events: span.events,
    duration: span.duration,
    ended: span.ended,
    resource: span.resource,
    instrumentationScope: span.instrumentationScope,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
  };
}
