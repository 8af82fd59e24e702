/**
 * OTLP spans as Zipkin v2 JSON spans, rendered the way @opentelemetry/exporter-zipkin renders the
 * SDK's spans (so a trace judged in-process and one judged here look alike in Zipkin): attributes
 * and resource attributes become string tags (arrays joined with commas), the status becomes
 * `otel.status_code` (and `error` with its message), events become annotations, the service name
 * the local endpoint. Times are whole microseconds; a duration under 1 µs is written as 1, as the
 * Zipkin API asks; identical annotations in one span are written once (the API wants them unique).
 */
import { int64ToBigInt, type CollectedSpan } from '../otlp/otlp-model';
import { setOwn } from '../otlp/attribute-read';
import { allAttributesOf } from '../otlp/received-span';
import { spanMessage } from '../otlp/span-message';
import { SpanKind, StatusCode } from '../otlp/otlp-schema';

export interface ZipkinSpan {
  traceId: string;
  id: string;
  parentId?: string;
  name: string;
  kind?: 'CLIENT' | 'SERVER' | 'PRODUCER' | 'CONSUMER';
  timestamp: number;
  duration: number;
  localEndpoint: { serviceName: string };
  tags: Record<string, string>;
  annotations?: { timestamp: number; value: string }[];
}

const KINDS: Record<number, ZipkinSpan['kind']> = {
  [SpanKind.SERVER]: 'SERVER',
  [SpanKind.CLIENT]: 'CLIENT',
  [SpanKind.PRODUCER]: 'PRODUCER',
  [SpanKind.CONSUMER]: 'CONSUMER',
};
const STATUS_NAMES: Record<number, string> = { [StatusCode.OK]: 'OK', [StatusCode.ERROR]: 'ERROR' };

export function toZipkinSpan(span: CollectedSpan): ZipkinSpan {
  const wire = spanMessage(span);
  const tags: Record<string, string> = {};
  // Every attribute (span.attributes holds only the names judging reads), read as judging reads them.
  for (const [key, value] of Object.entries(allAttributesOf(span))) setOwn(tags, key, tagText(value));
  const statusCode = wire.status?.code ?? StatusCode.UNSET;
  if (STATUS_NAMES[statusCode] !== undefined) tags['otel.status_code'] = STATUS_NAMES[statusCode];
  if (statusCode === StatusCode.ERROR && wire.status?.message) tags.error = wire.status.message;
  if (wire.droppedAttributesCount) tags['otel.dropped_attributes_count'] = String(wire.droppedAttributesCount);
  if (wire.droppedEventsCount) tags['otel.dropped_events_count'] = String(wire.droppedEventsCount);
  if (wire.droppedLinksCount) tags['otel.dropped_links_count'] = String(wire.droppedLinksCount);
  for (const [key, value] of Object.entries(span.origin.resource.attributes)) setOwn(tags, key, tagText(value));

  const seen = new Set<string>();
  const annotations = [];
  for (const event of wire.events ?? []) {
    const annotation = { timestamp: Number(int64ToBigInt(event.timeUnixNano, true) / 1000n), value: event.name ?? '' };
    const key = `${annotation.timestamp} ${annotation.value}`;
    if (seen.has(key)) continue;
    seen.add(key);
    annotations.push(annotation);
  }
  const kind = KINDS[span.kind];
  // Ids and times from the message too: asking the span would keep what judging reads while the batch waits.
  const startNs = int64ToBigInt(wire.startTimeUnixNano, true);
  const endNs = int64ToBigInt(wire.endTimeUnixNano, true);
  const durationUs = endNs > startNs ? Number((endNs - startNs + 500n) / 1000n) : 0;
  return {
    traceId: span.traceId,
    id: Buffer.from(wire.spanId).toString('hex'),
    ...(span.hasParent ? { parentId: Buffer.from(wire.parentSpanId).toString('hex') } : {}),
    name: span.name,
    ...(kind !== undefined ? { kind } : {}),
    timestamp: Number(startNs / 1000n),
    duration: Math.max(1, durationUs),
    localEndpoint: { serviceName: span.origin.resource.serviceName },
    tags,
    ...(annotations.length > 0 ? { annotations } : {}),
  };
}

/**
 * A tag value as the Zipkin exporter writes it: `String(value)` (arrays joined with commas); maps as
 * JSON; an AnyValue sent without a member as '', as protobufjs' defaults rendered it.
 */
function tagText(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(value);
    case 'object':
      if (value === null) return '';
      if (Array.isArray(value)) return String(value);
      return JSON.stringify(value, (_key, inner: unknown) => (typeof inner === 'bigint' ? inner.toString() : inner));
    default:
      return '';
  }
}
