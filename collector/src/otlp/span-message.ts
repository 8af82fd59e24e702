/**
 * A span's message decoded whole, for what renders every field (the Zipkin exporter) and for
 * tests; the collector's own path reads only the fields it needs (span-decode.ts).
 */
import type { CollectedSpan, WireSpan } from './otlp-model';
import { otlpRoot } from './otlp-schema';

const SpanType = otlpRoot.lookupType('opentelemetry.proto.trace.v1.Span');

export function spanMessage(span: CollectedSpan): WireSpan {
  return SpanType.decode(Buffer.from(span.raw, 'latin1')) as unknown as WireSpan;
}
