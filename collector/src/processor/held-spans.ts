/**
 * One held trace's spans that may be roots (mayBeRoot: the others are forwarded as they come),
 * kept compact while the trace window holds them (about two seconds each): per span a few fields
 * in slots of one array, its bytes left where decoding put them (the buffer of its request's
 * possible roots, outside the JS heap; see span-decode.ts). A held span is then no object for the
 * garbage collector to copy or mark. The spans are made again when the trace is flushed. A trace
 * held long has its bytes moved into a buffer of its own, so that it does not keep the buffers of
 * requests whose other spans are long gone.
 */
import { Buffer } from 'node:buffer';
import type { CollectedSpan, ScopeGroup } from '../otlp/otlp-model';
import { BUFFER_BYTES, BytesLease, ReceivedSpan, SPAN_BYTES } from '../otlp/received-span';

/** Slots per span: origin, name, kind, flags, marks, the lease of the buffer its bytes are in, their start and end there, estimated bytes. */
const STRIDE = 9;
/** A held span beside its bytes: its slots (4 bytes each), the array of a trace's first span made to its size. */
export const HELD_SPAN_BYTES = 64;

const NO_SLOTS: unknown[] = [];
const HAS_PARENT = 1;
const MARKED_ROOT = 2;

export class HeldSpans {
  // Most traces hold one span (their root): the first span's slots are an array of their exact size.
  private slots: unknown[] = NO_SLOTS;
  // What the spans are charged with (see heldBytes).
  private charged = 0;
  // The trace's own buffers its spans were moved into (rare: made when first needed).
  private own: Set<BytesLease> | undefined;

  get count(): number {
    return this.slots.length / STRIDE;
  }

  /**
   * Estimated memory held: per span its slots, its bytes and what decoding charged beyond its own
   * object (its name, its share of its resource, scope and request buffer); a moved trace's buffers.
   */
  get heldBytes(): number {
    return this.charged;
  }

  /**
   * Adds a span whose lease (one per request) holds `copies` for it already (TraceBuffer.add). A
   * span whose bytes are not in its lease's buffer (it came otherwise) gets a buffer of its own, the
   * copies held moved onto it.
   */
  add(span: CollectedSpan, copies: number): void {
    const { raw } = span;
    const marks = (span.hasParent ? HAS_PARENT : 0) | (span.markedRoot ? MARKED_ROOT : 0);
    let { lease } = span;
    let start = raw.byteOffset;
    let charged = HELD_SPAN_BYTES + span.estimatedBytes - SPAN_BYTES;
    if (lease === undefined || lease.bytes.buffer !== raw.buffer) {
      const own = Buffer.allocUnsafeSlow(raw.length);
      own.set(raw);
      lease?.release(copies);
      lease = new BytesLease(own);
      lease.hold(copies);
      start = 0;
      charged += BUFFER_BYTES;
    }
    // `| 0`: offsets and sizes (below 2 GiB) stored as small integers in place; a length read from
    // a typed array would otherwise be stored as a number object of its own, two per span.
    const end = (start + raw.length) | 0;
    if (this.slots === NO_SLOTS) this.slots = [span.origin, span.name, span.kind, span.flags, marks, lease, start | 0, end, span.estimatedBytes | 0];
    else this.slots.push(span.origin, span.name, span.kind, span.flags, marks, lease, start | 0, end, span.estimatedBytes | 0);
    this.charged += charged;
  }

  /**
   * Moves the bytes of the spans not yet moved into one buffer of the trace's own: their requests'
   * buffers go when their other spans have been sent. `copies`: what was held per span. Spans that
   * came since an earlier move get a buffer of their own in turn (the first keeps its spans).
   */
  moveBytes(copies: number): void {
    const { slots } = this;
    let length = 0;
    for (let index = 0; index < slots.length; index += STRIDE)
      if (!this.isOwn(slots[index + 5] as BytesLease)) length += (slots[index + 7] as number) - (slots[index + 6] as number);
    if (length === 0) return;
    const own = Buffer.allocUnsafeSlow(length);
    const lease = new BytesLease(own);
    let at = 0;
    for (let index = 0; index < slots.length; index += STRIDE) {
      const from = slots[index + 5] as BytesLease;
      if (this.isOwn(from)) continue;
      const end = at + from.bytes.copy(own, at, slots[index + 6] as number, slots[index + 7] as number);
      lease.hold(copies);
      from.release(copies);
      slots[index + 5] = lease;
      slots[index + 6] = at;
      slots[index + 7] = end;
      at = end;
    }
    (this.own ??= new Set()).add(lease);
    this.charged += BUFFER_BYTES;
  }

  private isOwn(lease: BytesLease): boolean {
    return this.own?.has(lease) ?? false;
  }

  /** The spans, made again: views of the same bytes, under the same leases. */
  spans(traceId: string): CollectedSpan[] {
    const { slots } = this;
    const spans: CollectedSpan[] = [];
    for (let index = 0; index < slots.length; index += STRIDE) {
      const marks = slots[index + 4] as number;
      spans.push(
        new ReceivedSpan(
          (slots[index + 5] as BytesLease).bytes.subarray(slots[index + 6] as number, slots[index + 7] as number),
          slots[index] as ScopeGroup,
          traceId,
          slots[index + 1] as string,
          slots[index + 2] as number,
          slots[index + 3] as number,
          (marks & HAS_PARENT) !== 0,
          (marks & MARKED_ROOT) !== 0,
          // A moved trace's buffers go with its first span.
          (slots[index + 8] as number) + (index === 0 ? (this.own?.size ?? 0) * BUFFER_BYTES : 0),
          slots[index + 5] as BytesLease,
        ),
      );
    }
    return spans;
  }
}
