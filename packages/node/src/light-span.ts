/**
 * LightSpan: what a query or an outgoing call gets instead of an SDK span inside a request the
 * sampler dropped. Nothing will export it; its only reader is cost attribution, which it reaches
 * directly on start and end — no id generation, no attribute cleaning, no processor chain. It
 * keeps what the cost record reads (kind, name, attributes, times, status) and drops the rest
 * (events, links, exceptions).
 *
 * It carries its request root's span context, whatever span it was started under: a downstream
 * service called under it sees the request's span as its parent, the one span of the trace
 * exported when the request breaches.
 */
import type { Attributes, AttributeValue, Context, Exception, HrTime, Link, SpanContext, SpanKind, SpanStatus, TimeInput } from '@opentelemetry/api';
import { SpanStatusCode } from '@opentelemetry/api';
import { hrTimeToMilliseconds, millisToHrTime, timeInputToHrTime, type InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, Span, TimedEvent } from '@opentelemetry/sdk-trace';

/** Cost attribution, as a light span reaches it (CostSpanProcessor implements it). */
export interface LightSpanSink {
  onStart(span: Span, parentContext: Context): void;
  onEnd(span: ReadableSpan): void;
}

const UNSET_STATUS: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });
const NO_LINKS: Link[] = [];
const NO_EVENTS: TimedEvent[] = [];

/** Wall-clock milliseconds now, at the resolution the SDK's own spans use. */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

function toMs(time: TimeInput | undefined): number {
  if (time === undefined) return nowMs();
  try {
    return hrTimeToMilliseconds(timeInputToHrTime(time));
  } catch {
    // As the SDK's spans do with a time they cannot read: now.
    return nowMs();
  }
}

export class LightSpan implements Span {
  readonly attributes: Attributes;
  readonly parentSpanContext: SpanContext;
  readonly resource: Resource;
  readonly links = NO_LINKS;
  readonly events = NO_EVENTS;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  status: SpanStatus = UNSET_STATUS;
  ended = false;
  private readonly startMs: number;
  private endMs = 0;

  constructor(
    public name: string,
    readonly kind: SpanKind,
    attributes: Attributes | undefined,
    startTime: TimeInput | undefined,
    /** The span it was started under (a light span, or the request's root or another recorded span); not kept. */
    parent: ReadableSpan,
    /** Its request root's span context: what it propagates. */
    private readonly rootContext: SpanContext,
    readonly instrumentationScope: InstrumentationScope,
    private readonly sink: LightSpanSink,
  ) {
    this.attributes = attributes === undefined ? {} : { ...attributes };
    this.parentSpanContext = parent.spanContext();
    this.resource = parent.resource;
    this.startMs = toMs(startTime);
  }

  /** Hands the span to cost attribution; called once, right after construction. */
  started(parentContext: Context): this {
    this.sink.onStart(this, parentContext);
    return this;
  }

  spanContext(): SpanContext {
    return this.rootContext;
  }

  get startTime(): HrTime {
    return millisToHrTime(this.startMs);
  }

  get endTime(): HrTime {
    return millisToHrTime(this.endMs);
  }

  get duration(): HrTime {
    return millisToHrTime(this.ended ? Math.max(0, this.endMs - this.startMs) : 0);
  }

  setAttribute(key: string, value: AttributeValue): this {
    // Instrumentations pass undefined for what they do not know; the SDK drops it too.
    if (!this.ended && value !== undefined && value !== null) this.attributes[key] = value;
    return this;
  }

  setAttributes(attributes: Attributes): this {
    for (const key of Object.keys(attributes)) this.setAttribute(key, attributes[key]);
    return this;
  }

  addEvent(): this {
    return this;
  }

  addLink(): this {
    return this;
  }

  addLinks(): this {
    return this;
  }

  setStatus(status: SpanStatus): this {
    if (!this.ended) this.status = status;
    return this;
  }

  updateName(name: string): this {
    if (!this.ended) this.name = name;
    return this;
  }

  recordException(_exception: Exception, _time?: TimeInput): void {}

  isRecording(): boolean {
    return !this.ended;
  }

  end(endTime?: TimeInput): void {
    if (this.ended) return;
    this.endMs = toMs(endTime);
    this.ended = true;
    this.sink.onEnd(this);
  }
}
