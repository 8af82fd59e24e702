/**
 * Wraps the export pipeline so that a trace whose request breached its budget is exported even
 * when the sampler dropped it. Unsampled spans are recorded (see the always-record sampler in
 * sdk.ts) but never exported by the batch processors; this processor holds an unsampled
 * request's spans until its root ends, then hands them to the exporters, marked sampled, if the
 * root breached, or lets them go if it did not. Sampled spans pass straight through.
 *
 * Memory: at most `maxSpansPerTrace` spans held per request in flight; further ones are counted
 * as dropped. Held spans are keyed weakly by their root, so a root that never ends frees them.
 */
import { TraceFlags, type Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { BUDGET_BREACHED } from '@request-budget/core';
import { attributionOf } from './cost-span-processor';

export interface BreachedTraceExportOptions {
  /** Spans held per unsampled request. @default 256 */
  readonly maxSpansPerTrace?: number;
}

export class BreachedTraceExportProcessor implements SpanProcessor {
  private readonly maxSpansPerTrace: number;
  private readonly held = new WeakMap<Span, ReadableSpan[]>();
  /** Spans of unsampled, breached traces that did not fit in the hold. */
  droppedSpans = 0;

  /** @param exporters the export processors (one batch processor per exporter) */
  constructor(
    private readonly exporters: readonly SpanProcessor[],
    options: BreachedTraceExportOptions = {},
  ) {
    this.maxSpansPerTrace = options.maxSpansPerTrace ?? 256;
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
      const spans = this.held.get(root) ?? [];
      this.held.delete(root);
      if (span.attributes[BUDGET_BREACHED] !== true) return;
      for (const held of spans) this.export(markedSampled(held));
      this.export(markedSampled(span));
      return;
    }
    if (rootEnded) return; // ended after its request: the decision has been made
    let spans = this.held.get(root);
    if (spans === undefined) this.held.set(root, (spans = []));
    if (spans.length < this.maxSpansPerTrace) spans.push(span);
    else this.droppedSpans += 1;
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
}

/** A view of the span whose context says sampled, which the batch processors export. */
function markedSampled(span: ReadableSpan): ReadableSpan {
  const context = span.spanContext();
  const sampledContext = { ...context, traceFlags: context.traceFlags | TraceFlags.SAMPLED };
  return Object.create(span, { spanContext: { value: () => sampledContext } }) as ReadableSpan;
}
