/**
 * A protobuf ExportTraceServiceRequest into {@link CollectedSpan}s, in one pass over the body:
 * what the collector reads (ids, kind, times, name, flags, attributes) is read straight from the
 * wire; each Span, Resource and InstrumentationScope message is kept as its bytes, to be forwarded
 * as it came. Everything forwarded is checked first (wire types, lengths, UTF-8, nesting; see
 * message-check.ts) and every entry counted against the body's budget (entry-budget.ts), so no
 * downstream refuses what was accepted and no body expands into more than its size allows.
 *
 * Fields unknown here are left out of what is kept (as a decoder without them would): an unknown
 * field of any size costs no memory once the request is decoded: the spans' bytes are copied into
 * buffers of the request's own (spansIntoBuffers), a resource's and a scope's into a string each.
 * A span with a string that is not UTF-8 is re-encoded with U+FFFD in its place, as the previous
 * decoder did for every span.
 */
import { Buffer } from 'node:buffer';
import protobuf from 'protobufjs';
import { canonicalText, type CollectedSpan, type GroupBytes, type MessageBytes, type ResourceGroup, type ScopeGroup } from './otlp-model';
import { ROOT_MARKER_ATTRIBUTE } from '@request-budget/core';
import { checkKeyValue, readKeyValue, readString } from './attribute-read';
import { EntryCounter } from './entry-budget';
import { checkMessage, planOf, skipField, skipKnownField, type CheckFindings } from './message-check';
import { otlpRoot } from './otlp-schema';
import { StringPool } from './string-pool';
import { WireFormatError, WireReader, WireType } from './wire-reader';
import {
  ATTRIBUTES,
  END,
  EVENTS,
  FLAGS,
  KIND,
  LINKS,
  NAME,
  PARENT_SPAN_ID,
  SPAN_ID,
  SPAN_ID_BYTES,
  START,
  STATUS,
  TRACE_ID,
  TRACE_ID_BYTES,
  TRACE_STATE,
} from './span-fields';
import { BUFFER_BYTES, BytesLease, ReceivedSpan, SPAN_BYTES } from './received-span';
import { mayBeRoot } from '../processor/root-attribution';

export interface DecodedSpans {
  readonly spans: CollectedSpan[];
  /** Spans refused one by one (bad ids). */
  readonly rejected: number;
  /** Why, for the partial success message (the first reason). */
  readonly rejectionReason?: string;
}

const ResourceSpansType = otlpRoot.lookupType('opentelemetry.proto.trace.v1.ResourceSpans');
const ScopeSpansType = otlpRoot.lookupType('opentelemetry.proto.trace.v1.ScopeSpans');
const SpanType = otlpRoot.lookupType('opentelemetry.proto.trace.v1.Span');
const ResourceType = otlpRoot.lookupType('opentelemetry.proto.resource.v1.Resource');
const ScopeType = otlpRoot.lookupType('opentelemetry.proto.common.v1.InstrumentationScope');
const EventType = otlpRoot.lookupType('opentelemetry.proto.trace.v1.Span.Event');
const LinkType = otlpRoot.lookupType('opentelemetry.proto.trace.v1.Span.Link');
const StatusType = otlpRoot.lookupType('opentelemetry.proto.trace.v1.Status');
const EntityRefType = otlpRoot.lookupType('opentelemetry.proto.common.v1.EntityRef');

const ExportTraceServiceRequestType = otlpRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');

const tag = (number: number, wireType: number) => (number << 3) | wireType;
const RESOURCE_SPANS = tag(1, WireType.LENGTH);

/** A resource beside its bytes and text: its record, attribute map and strings' headers (per request). */
const RESOURCE_BYTES = 160;
/** A scope beside its bytes and name: its record and strings' headers (per request). */
const SCOPE_BYTES = 96;

/**
 * Decodes a protobuf ExportTraceServiceRequest. `budgetBytes`: the size the entry budget is for
 * (the body as received, when it was converted from JSON). Throws WireFormatError or
 * EntryBudgetError for a body that cannot be used.
 */
export function decodeSpans(body: Uint8Array, budgetBytes = body.byteLength): DecodedSpans {
  const reader = new WireReader(body);
  const entries = new EntryCounter(budgetBytes);
  const decoding = new RequestDecoding(reader, entries);
  while (reader.pos < reader.end) {
    const fieldTag = reader.tag();
    if (fieldTag === RESOURCE_SPANS) {
      entries.add();
      const end = reader.lengthEnd();
      decoding.resourceSpans(end);
      reader.pos = end;
    } else skipField(reader, fieldTag, planOf(ExportTraceServiceRequestType));
  }
  return decoding.result();
}

/** Ranges of a message's bytes that are kept: all but its unknown fields. */
class KeptBytes {
  private readonly ranges: number[] = [];
  private runStart = 0;

  begin(start: number): void {
    this.ranges.length = 0;
    this.runStart = start;
  }

  /** An unknown field spans [from, to): left out. */
  leaveOut(from: number, to: number): void {
    if (from > this.runStart) this.ranges.push(this.runStart, from);
    this.runStart = to;
  }

  /** The kept bytes: a view into `buf` when nothing was left out, else a copy. */
  text(buf: Buffer, end: number): MessageBytes {
    if (this.ranges.length === 0) return buf.subarray(this.runStart, end);
    if (end > this.runStart) this.ranges.push(this.runStart, end);
    let length = 0;
    for (let index = 0; index < this.ranges.length; index += 2) length += this.ranges[index + 1] - this.ranges[index];
    const joined = Buffer.allocUnsafe(length);
    let at = 0;
    for (let index = 0; index < this.ranges.length; index += 2) at += buf.copy(joined, at, this.ranges[index], this.ranges[index + 1]);
    return joined;
  }
}

/** Where a ResourceSpans' or ScopeSpans' fields are (-1: no resource or scope). */
interface GroupFields {
  headStart: number;
  headEnd: number;
  schemaUrl: string;
  readonly itemRanges: number[];
}

class RequestDecoding {
  private readonly spans: ReceivedSpan[] = [];
  private rejected = 0;
  private rejectionReason: string | undefined;
  private readonly kept = new KeptBytes();
  private readonly findings: CheckFindings = { invalidUtf8: false };
  // Resource and scope are shared by their spans: charged to the next span kept.
  private groupBytes = 0;
  // Spans of a trace come together: they share one trace id string (less memory, and the trace
  // buffer finds the trace by the same string).
  private lastTraceIdStart = -1;
  private lastTraceId = '';

  constructor(
    private readonly reader: WireReader,
    private readonly entries: EntryCounter,
  ) {}

  result(): DecodedSpans {
    this.spansIntoBuffers();
    return { spans: this.spans, rejected: this.rejected, ...(this.rejectionReason !== undefined ? { rejectionReason: this.rejectionReason } : {}) };
  }

  /**
   * The spans' bytes, views into the body until now, copied side by side into buffers of the
   * request's own: no view into the body is kept (a few bytes would keep megabytes alive), and one
   * allocation serves many spans (an ArrayBuffer apiece would cost more than decoding them). Two
   * buffers: one for the spans that may be roots, which the trace window holds for its grace
   * period, one for the others, which it forwards at once (trace-buffer.ts): the second is let go
   * within milliseconds, whatever the first.
   */
  private spansIntoBuffers(): void {
    const { spans } = this;
    let rootLength = 0;
    let otherLength = 0;
    for (const span of spans) {
      if (mayBeRoot(span)) rootLength += span.raw.length;
      else otherLength += span.raw.length;
    }
    const roots = rootLength === 0 ? undefined : new BytesLease(Buffer.allocUnsafeSlow(rootLength));
    const others = otherLength === 0 ? undefined : new BytesLease(Buffer.allocUnsafeSlow(otherLength));
    let rootAt = 0;
    let otherAt = 0;
    for (const span of spans) {
      const root = mayBeRoot(span);
      const lease = root ? roots! : others!;
      const at = root ? rootAt : otherAt;
      // A buffer's own memory is charged to its first span.
      if (at === 0) span.estimatedBytes += BUFFER_BYTES;
      const end = at + span.raw.length;
      lease.bytes.set(span.raw, at);
      span.raw = lease.bytes.subarray(at, end);
      span.lease = lease;
      if (root) rootAt = end;
      else otherAt = end;
    }
  }

  /** One ResourceSpans, from `reader.pos` to `end`: its resource is read first, wherever it is. */
  resourceSpans(end: number): void {
    const { reader } = this;
    const outer = reader.end;
    reader.end = end;
    const group = this.groupFields(end, planOf(ResourceSpansType));
    const resource = this.resource(group.headStart, group.headEnd, group.schemaUrl);
    for (let index = 0; index < group.itemRanges.length; index += 2) {
      reader.pos = group.itemRanges[index]!;
      this.scopeSpans(resource, group.itemRanges[index + 1]);
    }
    reader.end = outer;
  }

  /**
   * The fields of a ResourceSpans or a ScopeSpans, which are laid out alike: 1 its resource or scope
   * (where it is), 2 each of its items (ScopeSpans or Span: where they are), 3 its schema URL.
   */
  private groupFields(end: number, plan: ReturnType<typeof planOf>): GroupFields {
    const { reader } = this;
    const group: GroupFields = { headStart: -1, headEnd: -1, schemaUrl: '', itemRanges: [] };
    while (reader.pos < end) {
      const fieldTag = reader.tag();
      if (fieldTag === tag(1, WireType.LENGTH)) {
        this.entries.add();
        group.headEnd = reader.lengthEnd();
        group.headStart = reader.pos;
        reader.pos = group.headEnd;
      } else if (fieldTag === tag(2, WireType.LENGTH)) {
        this.entries.add();
        const itemEnd = reader.lengthEnd();
        group.itemRanges.push(reader.pos, itemEnd);
        reader.pos = itemEnd;
      } else if (fieldTag === tag(3, WireType.LENGTH)) group.schemaUrl = readString(reader, this.findings);
      else skipField(reader, fieldTag, plan);
    }
    return group;
  }

  private resource(start: number, end: number, schemaUrl: string): ResourceGroup {
    const { reader } = this;
    const attributes: Record<string, unknown> = {};
    let raw: GroupBytes | undefined;
    if (start >= 0) {
      const outer = reader.end;
      this.findings.invalidUtf8 = false;
      reader.pos = start;
      reader.end = end;
      this.kept.begin(start);
      const plan = planOf(ResourceType);
      while (reader.pos < end) {
        const fieldStart = reader.pos;
        const fieldTag = reader.tag();
        if (fieldTag === tag(1, WireType.LENGTH)) {
          this.entries.add();
          readKeyValue(reader, reader.lengthEnd(), attributes, this.entries, this.findings, 1);
        } else if (fieldTag === tag(3, WireType.LENGTH)) {
          this.entries.add();
          this.checkNested(EntityRefType);
        } else if (plan.has(fieldTag >>> 3)) skipField(reader, fieldTag, plan);
        else {
          reader.skip(fieldTag & 7);
          this.leaveOut(fieldStart);
        }
      }
      raw = this.keptText(end, ResourceType).toString('latin1');
      reader.end = outer;
    }
    const serviceName = attributes['service.name'];
    const processKey = canonicalText(attributes);
    // The plain map and process key of the resource attributes hold about twice the key's text.
    this.groupBytes += RESOURCE_BYTES + (raw?.length ?? 0) + 2 * processKey.length;
    return {
      raw,
      schemaUrl,
      attributes,
      processKey,
      serviceName: typeof serviceName === 'string' && serviceName !== '' ? serviceName : 'unknown_service',
    };
  }

  private scopeSpans(resource: ResourceGroup, end: number): void {
    const { reader } = this;
    const outer = reader.end;
    reader.end = end;
    const { headStart: scopeStart, headEnd: scopeEnd, schemaUrl, itemRanges: spanRanges } = this.groupFields(end, planOf(ScopeSpansType));
    let scopeRaw: GroupBytes | undefined;
    let scopeName = '';
    if (scopeStart >= 0) {
      this.findings.invalidUtf8 = false;
      reader.pos = scopeStart;
      reader.end = scopeEnd;
      this.kept.begin(scopeStart);
      const scopePlan = planOf(ScopeType);
      while (reader.pos < scopeEnd) {
        const fieldStart = reader.pos;
        const fieldTag = reader.tag();
        const field = scopePlan.get(fieldTag >>> 3);
        if (field === undefined) {
          reader.skip(fieldTag & 7);
          this.leaveOut(fieldStart);
        } else if (fieldTag === tag(1, WireType.LENGTH)) scopeName = readString(reader, this.findings);
        else if (field.wireType !== (fieldTag & 7)) skipField(reader, fieldTag, scopePlan);
        else if (field.message !== undefined) {
          this.entries.add();
          this.checkNested(field.message);
        } else if (field.isString) readString(reader, this.findings);
        else skipKnownField(reader, field, fieldTag >>> 3, fieldTag & 7);
      }
      scopeRaw = this.keptText(scopeEnd, ScopeType).toString('latin1');
    }
    this.groupBytes += SCOPE_BYTES + (scopeRaw?.length ?? 0) + scopeName.length;
    const origin: ScopeGroup = { resource, raw: scopeRaw, schemaUrl, scopeName };
    for (let index = 0; index < spanRanges.length; index += 2) {
      reader.pos = spanRanges[index]!;
      reader.end = spanRanges[index + 1]!;
      this.span(origin, spanRanges[index + 1]);
    }
    reader.end = outer;
  }

  private traceIdAt(buf: Buffer, start: number): string {
    if (this.lastTraceIdStart < 0 || !sameBytes(buf, this.lastTraceIdStart, start, TRACE_ID_BYTES))
      this.lastTraceId = buf.toString('hex', start, start + TRACE_ID_BYTES);
    this.lastTraceIdStart = start;
    return this.lastTraceId;
  }

  /** An unknown field from `start` to `reader.pos`, left out; counted, as every field read costs a step. */
  private leaveOut(start: number): void {
    this.entries.add();
    this.kept.leaveOut(start, this.reader.pos);
  }

  /** Checks the message whose length prefix is at `reader.pos`, leaving `reader.pos` past it. */
  private checkNested(type: protobuf.Type): void {
    const { reader } = this;
    const end = reader.lengthEnd();
    const outer = reader.end;
    reader.end = end;
    checkMessage(reader, type, this.entries, this.findings, 2);
    reader.end = outer;
  }

  /** The kept bytes of the message just read, re-encoded when a string in it was not UTF-8. */
  private keptText(end: number, type: protobuf.Type): MessageBytes {
    const text = this.kept.text(this.reader.buf, end);
    if (!this.findings.invalidUtf8) return text;
    this.findings.invalidUtf8 = false;
    try {
      return Buffer.from(type.encode(type.decode(text)).finish());
    } catch (error) {
      // Checked above as every reader reads it: a failure here is the re-encoder's, still the body's.
      throw new WireFormatError(`${type.name} with text that is not UTF-8 could not be re-encoded: ${(error as Error).message}`);
    }
  }

  private span(origin: ScopeGroup, end: number): void {
    const { reader } = this;
    const { buf } = reader;
    const start = reader.pos;
    this.kept.begin(start);
    this.findings.invalidUtf8 = false;
    let traceIdStart = 0;
    let traceIdLength = 0;
    let spanIdStart = 0;
    let spanIdLength = 0;
    let parentStart = 0;
    let parentLength = 0;
    let name = '';
    let kind = 0;
    let flags = 0;
    let markedRoot = false;
    while (reader.pos < end) {
      const fieldStart = reader.pos;
      const fieldTag = reader.tag();
      switch (fieldTag) {
        case TRACE_ID: {
          const idEnd = reader.lengthEnd();
          traceIdStart = reader.pos;
          traceIdLength = idEnd - reader.pos;
          reader.pos = idEnd;
          break;
        }
        case SPAN_ID: {
          const idEnd = reader.lengthEnd();
          spanIdStart = reader.pos;
          spanIdLength = idEnd - reader.pos;
          reader.pos = idEnd;
          break;
        }
        case PARENT_SPAN_ID: {
          const idEnd = reader.lengthEnd();
          parentStart = reader.pos;
          parentLength = idEnd - reader.pos;
          reader.pos = idEnd;
          break;
        }
        case NAME:
          name = spanNames.shared(readString(reader, this.findings));
          break;
        case KIND:
          kind = reader.varint32();
          break;
        case START:
        case END:
          // Read with the span id when the trace is judged (readJudgedFields): a held span keeps no bigint.
          reader.skip(WireType.FIXED64);
          break;
        case ATTRIBUTES: {
          // Checked and counted now, read into a map when the trace is processed.
          this.entries.add();
          const attributeEnd = reader.lengthEnd();
          const marker = checkKeyValue(reader, attributeEnd, this.entries, this.findings, 1, MARKER_KEY);
          if (marker !== undefined) markedRoot = marker;
          break;
        }
        case FLAGS:
          flags = reader.fixed32();
          break;
        case EVENTS:
          this.entries.add();
          this.checkNested(EventType);
          break;
        case LINKS:
          this.entries.add();
          this.checkNested(LinkType);
          break;
        case STATUS:
          this.entries.add();
          this.checkNested(StatusType);
          break;
        case TRACE_STATE:
          readString(reader, this.findings);
          break;
        default: {
          const plan = planOf(SpanType);
          if (plan.has(fieldTag >>> 3)) skipField(reader, fieldTag, plan);
          else {
            reader.skip(fieldTag & 7);
            this.leaveOut(fieldStart);
          }
        }
      }
    }
    const problem = idProblem(buf, traceIdStart, traceIdLength, spanIdStart, spanIdLength, parentLength);
    if (problem !== undefined) {
      this.findings.invalidUtf8 = false;
      this.rejected += 1;
      this.rejectionReason ??= `span "${name.slice(0, 100)}": ${problem}`;
      return;
    }
    const raw = this.keptText(end, SpanType);
    // Held: the span, its bytes and its name (unless shared), and its share of its resource and scope.
    const estimatedBytes = SPAN_BYTES + raw.length + name.length + this.groupBytes;
    this.groupBytes = 0;
    this.spans.push(
      new ReceivedSpan(
        raw,
        origin,
        this.traceIdAt(buf, traceIdStart),
        name,
        kind,
        flags,
        // An all-zero parent id means "no parent" too.
        parentLength !== 0 && !allZero(buf, parentStart, parentLength),
        markedRoot,
        estimatedBytes,
      ),
    );
  }
}

const MARKER_KEY = Buffer.from(ROOT_MARKER_ATTRIBUTE);
// A service names its spans after a few operations and route templates.
const spanNames = new StringPool(4096);

function sameBytes(buf: Buffer, a: number, b: number, length: number): boolean {
  for (let index = 0; index < length; index += 1) if (buf[a + index] !== buf[b + index]) return false;
  return true;
}

function allZero(buf: Buffer, start: number, length: number): boolean {
  for (let index = start; index < start + length; index += 1) if (buf[index] !== 0) return false;
  return true;
}

function idProblem(buf: Buffer, traceStart: number, traceLength: number, spanStart: number, spanLength: number, parentLength: number): string | undefined {
  if (traceLength !== TRACE_ID_BYTES || allZero(buf, traceStart, traceLength)) return `invalid trace id (${traceLength} bytes; 16 non-zero bytes expected)`;
  if (spanLength !== SPAN_ID_BYTES || allZero(buf, spanStart, spanLength)) return `invalid span id (${spanLength} bytes; 8 non-zero bytes expected)`;
  if (parentLength !== 0 && parentLength !== SPAN_ID_BYTES) return `invalid parent span id (${parentLength} bytes; 0 or 8 expected)`;
  return undefined;
}
