/**
 * Protobuf bodies put together byte by byte, for payloads no encoder would produce: millions of
 * empty attributes, a field read by another wire type than its own, a large unknown field.
 */
import { randomBytes } from 'node:crypto';
import { ExportTraceServiceRequest } from '../../../test/support/otlp-schema';

function varint(value: number): Buffer {
  const bytes: number[] = [];
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  bytes.push(value);
  return Buffer.from(bytes);
}

/** Field `id` (wire type 2) holding `payload`. */
export const lengthDelimited = (id: number, payload: Uint8Array): Buffer => Buffer.concat([varint((id << 3) | 2), varint(payload.length), payload]);

/** Wraps encoded Span bytes into an ExportTraceServiceRequest (ResourceSpans 1 → ScopeSpans 2 → Span 2). */
export const requestOfSpan = (span: Uint8Array): Buffer => lengthDelimited(1, lengthDelimited(2, lengthDelimited(2, span)));

/** A valid span (official encoder), as Span message bytes, with its ids in hex. */
export function validSpanBytes(extra: Record<string, unknown> = {}): { bytes: Buffer; traceId: string; spanId: string } {
  const traceId = randomBytes(16);
  const spanId = randomBytes(8);
  const Span = ExportTraceServiceRequest.root.lookupType('opentelemetry.proto.trace.v1.Span');
  const bytes = Buffer.from(
    Span.encode(
      Span.fromObject({ traceId, spanId, name: 'GET /orders', kind: 2, startTimeUnixNano: 1_000_000, endTimeUnixNano: 2_000_000, ...extra }),
    ).finish(),
  );
  return { bytes, traceId: traceId.toString('hex'), spanId: spanId.toString('hex') };
}

/** A request of one valid span followed by `count` empty attributes (2 bytes each: tag 9, length 0). */
export function emptyAttributesRequest(count: number, wireType = 2): Buffer {
  const empty = Buffer.from([(9 << 3) | wireType, 0]);
  return requestOfSpan(Buffer.concat([validSpanBytes().bytes, Buffer.alloc(count * 2, empty)]));
}
