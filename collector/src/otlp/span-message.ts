/**
 * A span's message decoded whole, for what renders every field (the Zipkin exporter) and for
 * tests; the collector's own path reads only the fields it needs (span-decode.ts).
 */
import type { CollectedSpan, WireSpan } from './otlp-model';
import { otlpRoot } from './otlp-schema';

const SpanType = otlpRoot.lookupType('opentelemetry.proto.trace.v1.Span');

export function spanMessage(span: CollectedSpan): WireSpan {
  // A span's message is never empty: empty bytes are a span let go before it was sent (BytesLease).
  if (span.raw.length === 0) throw new Error(`span of trace ${span.traceId}: its bytes were let go before it was read`);
  return SpanType.decode(span.raw) as unknown as WireSpan;
}
