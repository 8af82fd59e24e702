/**
 * The simple span model the OTLP test receiver normalizes both encodings into.
 * Tests assert on this shape only, never on raw OTLP JSON or protobuf objects.
 */

/**
 * An attribute value as received.
 * - OTLP `intValue` → `number` when it is a safe integer, otherwise `bigint` (exact int64).
 * - `doubleValue` → `number` (NaN/±Infinity included).
 * - `bytesValue` → base64 `string` (the type map says `'bytes'`).
 * - `arrayValue` → array of converted elements; `kvlistValue` → plain object.
 * - an AnyValue with nothing set → `null` (type `'empty'`).
 */
export type AttributeValue = string | number | boolean | bigint | null | AttributeValue[] | { [key: string]: AttributeValue };

/** Which OTLP AnyValue field carried the value, so tests can tell int from double. */
export type AttributeType = 'string' | 'int' | 'double' | 'bool' | 'array' | 'kvlist' | 'bytes' | 'empty';

/** Attribute values keyed by attribute name. */
export type Attributes = Record<string, AttributeValue>;

/** OTLP attribute types keyed by attribute name (same keys as {@link Attributes}). */
export type AttributeTypes = Record<string, AttributeType>;

/** A span event as received. */
export interface ReceivedEvent {
  name: string;
  timeUnixNano: bigint;
  attributes: Attributes;
  attributeTypes: AttributeTypes;
}

/** OTLP span status: code 0 unset, 1 ok, 2 error. */
export interface ReceivedStatus {
  code: number;
  message?: string;
}

/** One span, flattened out of ResourceSpans → ScopeSpans → Span. */
export interface ReceivedSpan {
  /** Lowercase hex, 32 chars. */
  traceId: string;
  /** Lowercase hex, 16 chars. */
  spanId: string;
  /** Lowercase hex, or '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Attributes;
  attributeTypes: AttributeTypes;
  events: ReceivedEvent[];
  status: ReceivedStatus;
  /** Resource attributes of the enclosing ResourceSpans. */
  resource: Attributes;
  /** Instrumentation scope name ('' when absent). */
  scope: string;
  /** Which encoding delivered this span. */
  encoding: 'json' | 'protobuf';
}

/** OTLP SpanKind values (SERVER = 2; note @opentelemetry/api's SpanKind numbers them differently: SERVER = 1). */
export const OtlpSpanKind = {
  UNSPECIFIED: 0,
  INTERNAL: 1,
  SERVER: 2,
  CLIENT: 3,
  PRODUCER: 4,
  CONSUMER: 5,
} as const;

const KIND_NAMES = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];

function formatValue(value: AttributeValue): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(formatValue).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value)
      .map(([k, v]) => `${k}: ${formatValue(v)}`)
      .join(', ')}}`;
  }
  return String(value);
}

/** `key=value(type)` pairs, e.g. `cost.db.queries=3(int)`; used in failure messages. */
export function formatAttributes(attributes: Attributes, types: AttributeTypes): string {
  return Object.keys(attributes)
    .map((key) => `${key}=${formatValue(attributes[key]!)}(${types[key]})`)
    .join(' ');
}

/** One line per span, readable in a test failure message. */
export function describeSpans(spans: readonly ReceivedSpan[]): string {
  if (spans.length === 0) return '  (no spans)';
  return spans
    .map((s, i) => {
      const kind = KIND_NAMES[s.kind] ?? `KIND_${s.kind}`;
      const events = s.events.length ? ` events=[${s.events.map((e) => e.name).join(', ')}]` : '';
      return (
        `  #${i} ${kind} "${s.name}" trace=${s.traceId.slice(0, 8)}… span=${s.spanId}` +
        ` parent=${s.parentSpanId || '-'} status=${s.status.code} via ${s.encoding}\n` +
        `      ${formatAttributes(s.attributes, s.attributeTypes) || '(no attributes)'}${events}`
      );
    })
    .join('\n');
}
