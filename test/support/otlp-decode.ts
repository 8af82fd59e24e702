/**
 * Decodes OTLP ExportTraceServiceRequest bodies (protobuf or OTLP/JSON) into
 * {@link ReceivedSpan}s. Both encodings go through the same official schema:
 * protobuf is decoded by it, JSON is validated against it field by field and then
 * built into the same message type, so one normalizer serves both.
 */
import protobuf from 'protobufjs';
import { ExportTraceServiceRequest } from './otlp-schema';
import type { AttributeType, AttributeTypes, AttributeValue, Attributes, ReceivedSpan } from './received-span';

/** The payload could not be decoded; the receiver answers 400 with `message`. */
export class BadPayloadError extends Error {
  override name = 'BadPayloadError';
}

/** Which wire encoding a request used. */
export type OtlpEncoding = 'json' | 'protobuf';

/** Decode a protobuf ExportTraceServiceRequest body. */
export function decodeProtobufRequest(body: Uint8Array): ReceivedSpan[] {
  let message: protobuf.Message;
  try {
    message = ExportTraceServiceRequest.decode(body);
  } catch (err) {
    throw new BadPayloadError(`protobuf ExportTraceServiceRequest did not decode: ${(err as Error).message}`);
  }
  return normalizeRequest(message, 'protobuf');
}

/** Decode an OTLP/JSON ExportTraceServiceRequest body. */
export function decodeJsonRequest(text: string): ReceivedSpan[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text, keepBigIntegersExact);
  } catch (err) {
    throw new BadPayloadError(`body is not JSON: ${(err as Error).message}`);
  }
  const prepared = prepareMessage(ExportTraceServiceRequest, parsed, 'ExportTraceServiceRequest');
  let message: protobuf.Message;
  try {
    message = ExportTraceServiceRequest.fromObject(prepared);
  } catch (err) {
    throw new BadPayloadError(`JSON does not fit ExportTraceServiceRequest: ${(err as Error).message}`);
  }
  return normalizeRequest(message, 'json');
}

// ---------------------------------------------------------------------------
// JSON → schema-shaped object

/**
 * JSON.parse reviver: an integer literal beyond 2^53 would lose digits as a number,
 * so keep its source text (Node 22+ passes it) and let the int64 check parse it.
 */
function keepBigIntegersExact(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === 'number' && !Number.isSafeInteger(value) && context?.source && /^-?\d+$/.test(context.source)) {
    return context.source;
  }
  return value;
}

const SIGNED_64 = new Set(['int64', 'sint64', 'sfixed64']);
const UNSIGNED_64 = new Set(['uint64', 'fixed64']);
const INT_32 = new Set(['int32', 'sint32', 'sfixed32', 'uint32', 'fixed32']);
// OTLP/JSON deviates from proto3 JSON here: these ids are hex, not base64.
const HEX_ID_FIELDS = new Set(['traceId', 'spanId', 'parentSpanId']);
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

const toCamel = (key: string): string => key.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

function bad(where: string, what: string, value: unknown): BadPayloadError {
  let shown: string;
  try {
    shown = JSON.stringify(value)?.slice(0, 80) ?? String(value);
  } catch {
    shown = String(value);
  }
  return new BadPayloadError(`${where}: ${what}, got ${shown}`);
}

/** Check a JSON object against a message type and convert it to what fromObject expects. */
function prepareMessage(type: protobuf.Type, input: unknown, where: string): Record<string, unknown> {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw bad(where, `expected a ${type.name} object`, input);
  const out: Record<string, unknown> = {};
  for (const [rawKey, value] of Object.entries(input)) {
    // proto3 JSON accepts both lowerCamelCase and the original snake_case names.
    const key = toCamel(rawKey);
    const field = type.fields[key];
    // Unknown fields are skipped so newer senders still work; null means "absent" in proto3 JSON.
    if (!field || value === null) continue;
    const path = `${where}.${key}`;
    if (field.repeated) {
      if (!Array.isArray(value)) throw bad(path, 'expected an array', value);
      out[key] = value.map((item, i) => prepareField(field, item, `${path}[${i}]`));
    } else {
      out[key] = prepareField(field, value, path);
    }
  }
  return out;
}

function prepareField(field: protobuf.Field, value: unknown, where: string): unknown {
  const resolved = field.resolve().resolvedType;
  if (resolved instanceof protobuf.Type) return prepareMessage(resolved, value, where);
  if (resolved instanceof protobuf.Enum) return prepareEnum(resolved, value, where);
  if (SIGNED_64.has(field.type)) return prepareInt64(value, where, INT64_MIN, INT64_MAX);
  if (UNSIGNED_64.has(field.type)) return prepareInt64(value, where, 0n, UINT64_MAX);
  if (INT_32.has(field.type)) {
    if (typeof value !== 'number' || !Number.isInteger(value)) throw bad(where, 'expected an integer', value);
    return value;
  }
  switch (field.type) {
    case 'string':
      if (typeof value !== 'string') throw bad(where, 'expected a string', value);
      return value;
    case 'bool':
      if (typeof value !== 'boolean') throw bad(where, 'expected a boolean', value);
      return value;
    case 'double':
    case 'float':
      return prepareDouble(value, where);
    case 'bytes':
      return HEX_ID_FIELDS.has(field.name) ? prepareHex(value, where) : prepareBase64(value, where);
    default:
      throw bad(where, `unsupported field type ${field.type}`, value);
  }
}

function prepareEnum(type: protobuf.Enum, value: unknown, where: string): number {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && Object.hasOwn(type.values, value)) return type.values[value]!;
  throw bad(where, `expected a ${type.name} number or name`, value);
}

/** int64 arrives as a JSON number or a decimal string; return the exact decimal string. */
function prepareInt64(value: unknown, where: string, min: bigint, max: bigint): string {
  let exact: bigint;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) exact = BigInt(value);
  else if (typeof value === 'number' && Number.isInteger(value)) exact = BigInt(value);
  else throw bad(where, 'expected an integer (number or decimal string)', value);
  if (exact < min || exact > max) throw bad(where, 'integer out of range', value);
  return exact.toString();
}

function prepareDouble(value: unknown, where: string): number {
  if (typeof value === 'number') return value;
  // proto3 JSON spells the non-finite doubles as strings.
  if (value === 'NaN' || value === 'Infinity' || value === '-Infinity') return Number(value);
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
  throw bad(where, 'expected a number', value);
}

function prepareHex(value: unknown, where: string): Buffer {
  if (typeof value !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(value)) throw bad(where, 'expected a hex id', value);
  return Buffer.from(value, 'hex');
}

function prepareBase64(value: unknown, where: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) throw bad(where, 'expected base64 bytes', value);
  return Buffer.from(value, 'base64');
}

// ---------------------------------------------------------------------------
// message → ReceivedSpan

// Shapes of ExportTraceServiceRequest.toObject(msg, TO_OBJECT) below; every field
// may be absent because proto3 omits defaults.
interface PbAnyValue {
  value?: string; // name of the oneof member that is set (oneofs: true)
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  arrayValue?: { values?: PbAnyValue[] };
  kvlistValue?: { values?: PbKeyValue[] };
  bytesValue?: Uint8Array;
}
interface PbKeyValue {
  key?: string;
  value?: PbAnyValue;
}
interface PbEvent {
  name?: string;
  timeUnixNano?: string;
  attributes?: PbKeyValue[];
}
interface PbSpan {
  traceId?: Uint8Array;
  spanId?: Uint8Array;
  parentSpanId?: Uint8Array;
  name?: string;
  kind?: number;
  startTimeUnixNano?: string;
  endTimeUnixNano?: string;
  attributes?: PbKeyValue[];
  events?: PbEvent[];
  status?: { code?: number; message?: string };
}
interface PbRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: PbKeyValue[] };
    scopeSpans?: Array<{ scope?: { name?: string }; spans?: PbSpan[] }>;
  }>;
}

// Longs as decimal strings keep int64 exact; enums as numbers match the OTLP enums.
const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: Number, oneofs: true };

function normalizeRequest(message: protobuf.Message, encoding: OtlpEncoding): ReceivedSpan[] {
  const request = ExportTraceServiceRequest.toObject(message, TO_OBJECT) as PbRequest;
  const spans: ReceivedSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const resource = convertAttributes(rs.resource?.attributes).attributes;
    for (const ss of rs.scopeSpans ?? []) {
      for (const span of ss.spans ?? []) {
        spans.push(normalizeSpan(span, resource, ss.scope?.name ?? '', encoding));
      }
    }
  }
  return spans;
}

function normalizeSpan(span: PbSpan, resource: Attributes, scope: string, encoding: OtlpEncoding): ReceivedSpan {
  const { attributes, attributeTypes } = convertAttributes(span.attributes);
  const status: ReceivedSpan['status'] = { code: span.status?.code ?? 0 };
  if (span.status?.message) status.message = span.status.message;
  return {
    traceId: idHex(span.traceId, [16], `span "${span.name}" traceId`),
    spanId: idHex(span.spanId, [8], `span "${span.name}" spanId`),
    parentSpanId: idHex(span.parentSpanId, [0, 8], `span "${span.name}" parentSpanId`),
    name: span.name ?? '',
    kind: span.kind ?? 0,
    startTimeUnixNano: BigInt(span.startTimeUnixNano ?? 0),
    endTimeUnixNano: BigInt(span.endTimeUnixNano ?? 0),
    attributes,
    attributeTypes,
    events: (span.events ?? []).map((event) => ({
      name: event.name ?? '',
      timeUnixNano: BigInt(event.timeUnixNano ?? 0),
      ...convertAttributes(event.attributes),
    })),
    status,
    resource,
    scope,
    encoding,
  };
}

/** Ids of the wrong length are rejected: a real exporter never sends them. */
function idHex(id: Uint8Array | undefined, lengths: number[], where: string): string {
  const bytes = id ?? new Uint8Array(0);
  if (!lengths.includes(bytes.length)) {
    throw new BadPayloadError(`${where}: expected ${lengths.join(' or ')} bytes, got ${bytes.length}`);
  }
  return Buffer.from(bytes).toString('hex');
}

function convertAttributes(list: PbKeyValue[] | undefined): { attributes: Attributes; attributeTypes: AttributeTypes } {
  const attributes: Attributes = {};
  const attributeTypes: AttributeTypes = {};
  for (const kv of list ?? []) {
    const [value, type] = convertAnyValue(kv.value);
    attributes[kv.key ?? ''] = value;
    attributeTypes[kv.key ?? ''] = type;
  }
  return { attributes, attributeTypes };
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function convertAnyValue(value: PbAnyValue | undefined): [AttributeValue, AttributeType] {
  switch (value?.value) {
    case 'stringValue':
      return [value.stringValue ?? '', 'string'];
    case 'boolValue':
      return [value.boolValue ?? false, 'bool'];
    case 'intValue': {
      const exact = BigInt(value.intValue ?? 0);
      return [exact >= MIN_SAFE && exact <= MAX_SAFE ? Number(exact) : exact, 'int'];
    }
    case 'doubleValue':
      return [value.doubleValue ?? 0, 'double'];
    case 'bytesValue':
      return [Buffer.from(value.bytesValue ?? new Uint8Array(0)).toString('base64'), 'bytes'];
    case 'arrayValue':
      return [(value.arrayValue?.values ?? []).map((item) => convertAnyValue(item)[0]), 'array'];
    case 'kvlistValue':
      return [convertAttributes(value.kvlistValue?.values).attributes, 'kvlist'];
    default:
      return [null, 'empty'];
  }
}
