/**
 * A protobuf ExportTraceServiceRequest into {@link CollectedSpan}s, in one pass over the body:
 * what the collector reads (ids, kind, times, name, flags, attributes) is read straight from the
 * wire; each Span, Resource and InstrumentationScope message is kept as its bytes, to be forwarded
 * as it came. Everything forwarded is checked first (wire types, lengths, UTF-8, nesting; see
 * message-check.ts) and every entry counted against the body's budget (entry-budget.ts), so no
 * downstream refuses what was accepted and no body expands into more than its size allows.
 *
 * Fields unknown here are left out of what is kept (as a decoder without them would): an unknown
 * field of any size costs no memory once the request is decoded. A span with a string that is not
 * UTF-8 is re-encoded with U+FFFD in its place, as the previous decoder did for every span.
 */
import { Buffer } from 'node:buffer';
import protobuf from 'protobufjs';
import { canonicalText, type CollectedSpan, type MessageBytes, type ResourceGroup, type ScopeGroup } from './otlp-model';
import { ROOT_MARKER_ATTRIBUTE, type AttributeMap } from '@request-budget/core';
import { checkKeyValue, contractKeyOf, readKeyValue, readString } from './attribute-read';
import { EntryCounter } from './entry-budget';
import { checkMessage, planOf, skipField, skipKnownField, type CheckFindings } from './message-check';
import { otlpRoot } from './otlp-schema';
import { StringPool } from './string-pool';
import { WireFormatError, WireReader, WireType } from './wire-reader';

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

// Span fields.
const TRACE_ID = tag(1, WireType.LENGTH);
const SPAN_ID = tag(2, WireType.LENGTH);
const TRACE_STATE = tag(3, WireType.LENGTH);
const PARENT_SPAN_ID = tag(4, WireType.LENGTH);
const NAME = tag(5, WireType.LENGTH);
const KIND = tag(6, WireType.VARINT);
const START = tag(7, WireType.FIXED64);
const END = tag(8, WireType.FIXED64);
const ATTRIBUTES = tag(9, WireType.LENGTH);
const EVENTS = tag(11, WireType.LENGTH);
const LINKS = tag(13, WireType.LENGTH);
const STATUS = tag(15, WireType.LENGTH);
const FLAGS = tag(16, WireType.FIXED32);

/**
 * A held span beside its message: its object, the message's string header, its slot in its trace
 * (measured with the benchmark's traffic: about 140). What judging reads (ids, times, attribute
 * map) is held only while its trace is judged, one trace at a time.
 */
const SPAN_BYTES = 160;
/** A resource beside its bytes and text: its record, attribute map and strings' headers (per request). */
const RESOURCE_BYTES = 160;
/** A scope beside its bytes and name: its record and strings' headers (per request). */
const SCOPE_BYTES = 96;

const TRACE_ID_BYTES = 16;
const SPAN_ID_BYTES = 8;

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

  text(buf: Buffer, end: number): MessageBytes {
    if (this.ranges.length === 0) return buf.toString('latin1', this.runStart, end);
    if (end > this.runStart) this.ranges.push(this.runStart, end);
    // Copied into one buffer and read once: joined as strings, many small pieces would be held as
    // a tree of them, many times their bytes.
    let length = 0;
    for (let index = 0; index < this.ranges.length; index += 2) length += this.ranges[index + 1] - this.ranges[index];
    const joined = Buffer.allocUnsafe(length);
    let at = 0;
    for (let index = 0; index < this.ranges.length; index += 2) at += buf.copy(joined, at, this.ranges[index], this.ranges[index + 1]);
    return joined.toString('latin1');
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
  private readonly spans: CollectedSpan[] = [];
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
    return { spans: this.spans, rejected: this.rejected, ...(this.rejectionReason !== undefined ? { rejectionReason: this.rejectionReason } : {}) };
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
    let raw: MessageBytes | undefined;
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
      raw = this.keptText(end, ResourceType);
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
    let scopeRaw: MessageBytes | undefined;
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
      scopeRaw = this.keptText(scopeEnd, ScopeType);
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
      return Buffer.from(type.encode(type.decode(Buffer.from(text, 'latin1'))).finish()).toString('latin1');
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

/**
 * What judging reads of a span beyond what the trace window needs: its ids, times and attributes,
 * read from its bytes together when first asked for. A held span keeps none of them (no id
 * strings, bigints or map: fewer objects for the garbage collector to copy and mark).
 */
interface JudgedFields {
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly startNs: bigint;
  readonly endNs: bigint;
  readonly attributes: AttributeMap;
}

/** A span as received: its bytes and what the trace window needs; the rest is read from the bytes when asked for. */
class ReceivedSpan implements CollectedSpan {
  private fields: JudgedFields | undefined;

  constructor(
    public raw: MessageBytes,
    readonly origin: ScopeGroup,
    readonly traceId: string,
    readonly name: string,
    readonly kind: number,
    readonly flags: number,
    readonly hasParent: boolean,
    readonly markedRoot: boolean,
    public estimatedBytes: number,
  ) {}

  get spanId(): string {
    return this.read().spanId;
  }

  get parentSpanId(): string {
    return this.read().parentSpanId;
  }

  get startNs(): bigint {
    return this.read().startNs;
  }

  get endNs(): bigint {
    return this.read().endNs;
  }

  get attributes(): AttributeMap {
    return this.read().attributes;
  }

  releaseAttributes(): void {
    this.fields = undefined;
  }

  private read(): JudgedFields {
    return (this.fields ??= readJudgedFields(this.raw));
  }
}

// Spans are read one at a time: their bytes are written here to be read, not copied anew each time
// (a larger one gets a buffer of its own).
const scratch = Buffer.allocUnsafe(64 * 1024);

/**
 * The ids, times and attributes in a span's bytes, checked when it was received. Of the
 * attributes, those core reads or writes (its attribute contract); the others stay in the bytes,
 * forwarded as they came.
 */
function readJudgedFields(raw: MessageBytes): JudgedFields {
  const reader = readerOf(raw);
  let spanId = '';
  let parentSpanId = '';
  let startNs = 0n;
  let endNs = 0n;
  const attributes: Record<string, unknown> = {};
  // Counted against the request's budget when received: here only the cap any request has.
  const entries = new EntryCounter(Number.MAX_SAFE_INTEGER);
  const findings: CheckFindings = { invalidUtf8: false };
  while (reader.pos < reader.end) {
    const fieldTag = reader.tag();
    switch (fieldTag) {
      case SPAN_ID:
        spanId = hexOf(reader);
        break;
      case PARENT_SPAN_ID:
        parentSpanId = hexOf(reader);
        // An all-zero parent id means "no parent" too.
        if (parentSpanId === ALL_ZERO_SPAN_ID) parentSpanId = '';
        break;
      case START:
        startNs = reader.fixed64();
        break;
      case END:
        endNs = reader.fixed64();
        break;
      case ATTRIBUTES: {
        const end = reader.lengthEnd();
        const key = contractKeyOf(reader, end);
        if (key === undefined) reader.pos = end;
        else readKeyValue(reader, end, attributes, entries, findings, 1, key);
        break;
      }
      default:
        reader.skip(fieldTag & 7);
    }
  }
  return { spanId, parentSpanId, startNs, endNs, attributes };
}

/**
 * Every attribute of a span, as judging reads the contract's (last of duplicate keys wins, values
 * as the last member sent, own properties): for what shows them all (the Zipkin exporter).
 */
export function allAttributesOf(span: CollectedSpan): AttributeMap {
  const reader = readerOf(span.raw);
  const attributes: Record<string, unknown> = {};
  const entries = new EntryCounter(Number.MAX_SAFE_INTEGER);
  const findings: CheckFindings = { invalidUtf8: false };
  while (reader.pos < reader.end) {
    const fieldTag = reader.tag();
    if (fieldTag === ATTRIBUTES) readKeyValue(reader, reader.lengthEnd(), attributes, entries, findings, 1);
    else reader.skip(fieldTag & 7);
  }
  return attributes;
}

/** A reader over a span's bytes, written into the scratch buffer (spans are read one at a time). */
function readerOf(raw: MessageBytes): WireReader {
  return new WireReader(raw.length <= scratch.length ? scratch.subarray(0, scratch.write(raw, 0, 'latin1')) : Buffer.from(raw, 'latin1'));
}

const ALL_ZERO_SPAN_ID = '0'.repeat(2 * SPAN_ID_BYTES);

/** A length-delimited id field as lowercase hex ('' when empty; lengths were checked when received). */
function hexOf(reader: WireReader): string {
  const end = reader.lengthEnd();
  const hex = reader.buf.toString('hex', reader.pos, end);
  reader.pos = end;
  return hex;
}

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
