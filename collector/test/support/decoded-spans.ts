/** Spans of one trace as the collector has them once decoded: CLIENT children by default. */
import type { CollectedSpan } from '../../src/otlp/otlp-model';
import { decodeTraceRequest } from '../../src/receiver/otlp-decode';
import { Kind, newSpanId, toOtlpProtobuf, type SyntheticSpan } from './synthetic-trace';

export function decodedSpans(traceId: string, spans: Partial<SyntheticSpan>[], name = 'x'): CollectedSpan[] {
  const full = spans.map((span) => ({
    service: 'orders-py',
    name,
    kind: Kind.CLIENT,
    spanId: newSpanId(),
    parentSpanId: newSpanId(),
    startUs: 0,
    endUs: 10,
    ...span,
  }));
  return decodeTraceRequest(toOtlpProtobuf({ traceId, baseNs: 1_000_000_000n, spans: full }), 'protobuf').spans;
}
