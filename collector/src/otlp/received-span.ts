/**
 * A span as the collector holds it: its message bytes and what the trace window needs (trace id,
 * name, kind, flags, whether it has a parent, the root marker). Its ids, times and contract
 * attributes are read from the bytes together when judging first asks for one, and let go after.
 */
import type { AttributeMap } from '@request-budget/core';
import { contractKeyOf, readKeyValue } from './attribute-read';
import { EntryCounter } from './entry-budget';
import type { CheckFindings } from './message-check';
import type { CollectedSpan, MessageBytes, ScopeGroup } from './otlp-model';
import { ATTRIBUTES, END, PARENT_SPAN_ID, SPAN_ID, SPAN_ID_BYTES, START } from './span-fields';
import { WireReader } from './wire-reader';

/**
 * A span object beside its bytes: the object, the view of its bytes, its slot in the arrays that
 * carry it. What judging reads (ids, times, attribute map) is held only while its trace is judged,
 * one trace at a time. Calibrated in decode-budget.test.ts.
 */
export const SPAN_BYTES = 260;

/**
 * A buffer of span bytes beside its bytes: its ArrayBuffer and Buffer objects, its lease and the
 * native record of its memory. Charged to the first span in it.
 */
export const BUFFER_BYTES = 300;

/**
 * The memory under the bytes of a request's spans (two buffers: its possible roots', the others';
 * see span-decode.ts), let go as soon
 * as every downstream has copied every one of them into a request of its own: V8 gives an
 * ArrayBuffer's memory back only once a full collection finds it dead, and one that has been held
 * for the trace window is in the old generation by then — at a hundred thousand spans a second,
 * buffers already sent would pile up outside the heap between full collections. The trace window
 * holds `copies` per span it takes in; each copy, and each span moved out (a trace held long),
 * releases one (`copies` for a span moved out); the last detaches the buffer. A span is never read
 * after its copies; if one were, its bytes would be empty, and the encoder refuses an empty span.
 */
export class BytesLease {
  private holders = 0;

  /** `bytes`: the whole buffer, of its own ArrayBuffer. */
  constructor(readonly bytes: Buffer<ArrayBuffer>) {}

  hold(count: number): void {
    this.holders += count;
  }

  release(count = 1): void {
    // Nothing held (no copies are made): the buffer goes with its last view, as any other.
    if (count <= 0) return;
    this.holders -= count;
    // Only a buffer that is all of its ArrayBuffer is detached (never a slice of a shared one).
    if (this.holders !== 0 || this.bytes.byteOffset !== 0 || this.bytes.length !== this.bytes.buffer.byteLength) return;
    // ES2024's ArrayBuffer#transfer (Node ≥ 21), beyond the ES2023 library this project compiles
    // with. Letting go early is only an economy: where it cannot be done, a collection does it.
    const { buffer } = this.bytes;
    const { transfer } = buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };
    try {
      transfer?.call(buffer, 0);
    } catch {
      // not detachable: left to the collector
    }
  }
}

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

export class ReceivedSpan implements CollectedSpan {
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
    /** Whose memory `raw` is in: set once the request's spans are in one buffer. */
    public lease?: BytesLease,
  ) {}

  bytesCopied(): void {
    this.lease?.release();
  }

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

/**
 * The ids, times and attributes in a span's bytes, checked when it was received, as judging reads
 * them (hex ids, bigint times).
 */
function readJudgedFields(raw: MessageBytes): JudgedFields {
  const fields = readSpanFields(raw, new SpanWireFields());
  return {
    spanId: hexOfId(fields.spanIdHi, fields.spanIdLo),
    parentSpanId: fields.hasParentId ? hexOfId(fields.parentHi, fields.parentLo) : '',
    startNs: nsOf(fields.startHi, fields.startLo),
    endNs: nsOf(fields.endHi, fields.endLo),
    attributes: fields.attributes,
  };
}

/**
 * A span's ids and times as 32-bit halves (numbers, no strings or bigints: what a span record
 * keeps), and the attributes of the contract (core's CONTRACT_ATTRIBUTES) as a plain map; the
 * other attributes stay in the bytes, forwarded as they came. Filled by readSpanFields.
 */
export class SpanWireFields {
  spanIdHi = 0;
  spanIdLo = 0;
  /** A parent id was sent, and not all zero (which means "no parent" too). */
  hasParentId = false;
  parentHi = 0;
  parentLo = 0;
  startHi = 0;
  startLo = 0;
  endHi = 0;
  endLo = 0;
  attributes: Record<string, unknown> = {};
}

/** Reads a span's ids, times and contract attributes (checked when it was received) into `out`. */
export function readSpanFields(raw: MessageBytes, out: SpanWireFields): SpanWireFields {
  const reader = new WireReader(raw);
  const { buf } = reader;
  out.spanIdHi = out.spanIdLo = out.parentHi = out.parentLo = out.startHi = out.startLo = out.endHi = out.endLo = 0;
  out.hasParentId = false;
  const attributes: Record<string, unknown> = {};
  // Counted against the request's budget when received: here only the cap any request has.
  const entries = new EntryCounter(Number.MAX_SAFE_INTEGER);
  const findings: CheckFindings = { invalidUtf8: false };
  while (reader.pos < reader.end) {
    const fieldTag = reader.tag();
    switch (fieldTag) {
      case SPAN_ID: {
        // Lengths were checked when received: 8 bytes.
        const end = reader.lengthEnd();
        out.spanIdHi = buf.readUInt32BE(reader.pos);
        out.spanIdLo = buf.readUInt32BE(reader.pos + 4);
        reader.pos = end;
        break;
      }
      case PARENT_SPAN_ID: {
        // 0 or 8 bytes.
        const end = reader.lengthEnd();
        if (end - reader.pos === SPAN_ID_BYTES) {
          out.parentHi = buf.readUInt32BE(reader.pos);
          out.parentLo = buf.readUInt32BE(reader.pos + 4);
          out.hasParentId = out.parentHi !== 0 || out.parentLo !== 0;
        } else out.hasParentId = false;
        reader.pos = end;
        break;
      }
      case START:
        out.startLo = reader.fixed32();
        out.startHi = reader.fixed32();
        break;
      case END:
        out.endLo = reader.fixed32();
        out.endHi = reader.fixed32();
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
  out.attributes = attributes;
  return out;
}

/** A span id from its 32-bit halves, as lowercase hex. */
function hexOfId(hi: number, lo: number): string {
  return hex8(hi) + hex8(lo);
}

function hex8(half: number): string {
  const hex = half.toString(16);
  return hex.length === 8 ? hex : '0'.repeat(8 - hex.length) + hex;
}

const TWO_32 = BigInt(2 ** 32);

/** Nanoseconds from their 32-bit halves. */
function nsOf(hi: number, lo: number): bigint {
  return hi === 0 ? BigInt(lo) : BigInt(hi) * TWO_32 + BigInt(lo);
}

/**
 * Every attribute of a span, as judging reads the contract's (last of duplicate keys wins, values
 * as the last member sent, own properties): for what shows them all (the Zipkin exporter).
 */
export function allAttributesOf(span: CollectedSpan): AttributeMap {
  const reader = new WireReader(span.raw);
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
