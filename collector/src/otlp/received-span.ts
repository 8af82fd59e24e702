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
 * The memory under the bytes of a request's spans (one buffer; see span-decode.ts), let go as soon
 * as every downstream has copied every one of them into a request of its own: V8 gives an
 * ArrayBuffer's memory back only once a full collection finds it dead, and one that has been held
 * for the trace window is in the old generation by then — at a hundred thousand spans a second,
 * buffers already sent would pile up outside the heap between full collections. The trace window
 * holds `copies` per span it takes in; each copy, and each span moved out (a trace held long),
 * releases one (`copies` for a span moved out); the last detaches the buffer. A span is never read after its copies; if one were,
 * its bytes would be empty, and the encoder refuses an empty span.
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
 * The ids, times and attributes in a span's bytes, checked when it was received. Of the
 * attributes, those core reads or writes (its attribute contract); the others stay in the bytes,
 * forwarded as they came.
 */
function readJudgedFields(raw: MessageBytes): JudgedFields {
  const reader = new WireReader(raw);
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

const ALL_ZERO_SPAN_ID = '0'.repeat(2 * SPAN_ID_BYTES);

/** A length-delimited id field as lowercase hex ('' when empty; lengths were checked when received). */
function hexOf(reader: WireReader): string {
  const end = reader.lengthEnd();
  const hex = reader.buf.toString('hex', reader.pos, end);
  reader.pos = end;
  return hex;
}
