/**
 * ExportTraceServiceRequest bodies, protobuf or OTLP/JSON, into {@link CollectedSpan}s. Protobuf is
 * decoded in one pass (span-decode.ts); JSON is checked against the schema field by field,
 * converted (hex ids, int64 as text or number, enum names or numbers), built into the message and
 * encoded, so one decoder serves both. Spans whose ids cannot be right are rejected one by one
 * (reported to the sender as a partial success); a body that does not decode is refused whole, and
 * so is one that would decode into more entries than its size allows (entry-budget.ts). What is
 * kept holds no view into the body.
 */
import protobuf from 'protobufjs';
import { checkJsonEntries, EntryBudgetError } from '../otlp/entry-budget';
import { ExportTraceServiceRequest } from '../otlp/otlp-schema';
import { decodeSpans, type DecodedSpans } from '../otlp/span-decode';
import { WireFormatError } from '../otlp/wire-reader';

/** The body cannot be used at all; answered with 400 and this message. */
export class OtlpDecodeError extends Error {
  override name = 'OtlpDecodeError';
}

export type OtlpEncoding = 'protobuf' | 'json';

export type DecodedRequest = DecodedSpans;

/** Decodes a (decompressed) request body. Throws {@link OtlpDecodeError}. */
export function decodeTraceRequest(body: Uint8Array, encoding: OtlpEncoding): DecodedRequest {
  if (encoding === 'protobuf') return decodeProtobuf(body, body.byteLength);
  try {
    checkJsonEntries(body);
  } catch (error) {
    throw new OtlpDecodeError(describe(error));
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'), keepBigIntegersExact);
  } catch (error) {
    throw new OtlpDecodeError(`body is not JSON: ${describe(error)}`);
  }
  const prepared = prepareMessage(ExportTraceServiceRequest, parsed, 'ExportTraceServiceRequest');
  let message: protobuf.Message;
  try {
    message = ExportTraceServiceRequest.fromObject(prepared);
  } catch (error) {
    throw new OtlpDecodeError(`JSON does not fit ExportTraceServiceRequest: ${describe(error)}`);
  }
  // One path from here: the message as protobuf, its entries counted against the JSON body's budget.
  return decodeProtobuf(ExportTraceServiceRequest.encode(message).finish(), body.byteLength);
}

function decodeProtobuf(bytes: Uint8Array, budgetBytes: number): DecodedRequest {
  try {
    return decodeSpans(bytes, budgetBytes);
  } catch (error) {
    if (error instanceof EntryBudgetError) throw new OtlpDecodeError(error.message);
    if (error instanceof WireFormatError) throw new OtlpDecodeError(`protobuf ExportTraceServiceRequest did not decode: ${error.message}`);
    throw error;
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---------------------------------------------------------------------------------------------
// OTLP/JSON → what ExportTraceServiceRequest.fromObject expects, checked on the way.

/**
 * JSON.parse reviver: an integer literal beyond 2^53 would lose digits as a number, so its source
 * text is kept (Node 22+ passes it) for the int64 conversion below.
 */
function keepBigIntegersExact(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === 'number' && !Number.isSafeInteger(value) && context?.source !== undefined && /^-?\d+$/.test(context.source)) return context.source;
  return value;
}

const SIGNED_64 = new Set(['int64', 'sint64', 'sfixed64']);
const UNSIGNED_64 = new Set(['uint64', 'fixed64']);
const INT_32 = new Set(['int32', 'sint32', 'sfixed32']);
const UINT_32 = new Set(['uint32', 'fixed32']);
// OTLP/JSON departs from the proto3 JSON mapping here: these ids are hex, not base64.
const HEX_ID_FIELDS = new Set(['traceId', 'spanId', 'parentSpanId']);
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const MAX_DEPTH = 64;

const toCamel = (key: string): string => key.replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());

function bad(where: string, what: string, value: unknown): OtlpDecodeError {
  let shown: string;
  try {
    shown = JSON.stringify(value)?.slice(0, 80) ?? String(value);
  } catch {
    shown = String(value);
  }
  return new OtlpDecodeError(`${where}: ${what}, got ${shown}`);
}

function prepareMessage(type: protobuf.Type, input: unknown, where: string, depth = 0): Record<string, unknown> {
  if (depth > MAX_DEPTH) throw new OtlpDecodeError(`${where}: nested deeper than ${MAX_DEPTH} levels`);
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw bad(where, `expected a ${type.name} object`, input);
  const out: Record<string, unknown> = {};
  for (const [rawKey, value] of Object.entries(input)) {
    // proto3 JSON accepts lowerCamelCase and the original snake_case names.
    const key = toCamel(rawKey);
    // Own fields only: `constructor` or `toString` would find Object.prototype's members.
    const field = Object.hasOwn(type.fields, key) ? type.fields[key] : undefined;
    // Unknown fields are skipped so newer senders still work; null means absent.
    if (field === undefined || value === null) continue;
    const path = `${where}.${key}`;
    if (field.repeated) {
      if (!Array.isArray(value)) throw bad(path, 'expected an array', value);
      out[key] = value.map((item, index) => prepareField(field, item, `${path}[${index}]`, depth));
    } else {
      out[key] = prepareField(field, value, path, depth);
    }
  }
  return out;
}

function prepareField(field: protobuf.Field, value: unknown, where: string, depth: number): unknown {
  const resolved = field.resolve().resolvedType;
  if (resolved instanceof protobuf.Type) return prepareMessage(resolved, value, where, depth + 1);
  if (resolved instanceof protobuf.Enum) {
    if (typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31) return value;
    if (typeof value === 'string' && Object.hasOwn(resolved.values, value)) return resolved.values[value];
    throw bad(where, `expected a ${resolved.name} number or name`, value);
  }
  if (SIGNED_64.has(field.type)) return prepareInt64(value, where, INT64_MIN, INT64_MAX);
  if (UNSIGNED_64.has(field.type)) return prepareInt64(value, where, 0n, UINT64_MAX);
  if (INT_32.has(field.type)) return prepareInt32(value, where, -(2 ** 31), 2 ** 31 - 1);
  if (UINT_32.has(field.type)) return prepareInt32(value, where, 0, 2 ** 32 - 1);
  switch (field.type) {
    case 'string':
      if (typeof value !== 'string') throw bad(where, 'expected a string', value);
      return value;
    case 'bool':
      if (typeof value !== 'boolean') throw bad(where, 'expected a boolean', value);
      return value;
    case 'double':
    case 'float':
      if (typeof value === 'number') return value;
      // proto3 JSON spells the non-finite doubles as strings, and accepts numbers as text.
      if (value === 'NaN' || value === 'Infinity' || value === '-Infinity') return Number(value);
      if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
      throw bad(where, 'expected a number', value);
    case 'bytes':
      if (HEX_ID_FIELDS.has(field.name)) {
        if (typeof value !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(value)) throw bad(where, 'expected a hex id', value);
        return Buffer.from(value, 'hex');
      }
      if (typeof value !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) throw bad(where, 'expected base64 bytes', value);
      return Buffer.from(value, 'base64');
    default:
      throw bad(where, `unsupported field type ${field.type}`, value);
  }
}

/** int64 arrives as a JSON number or a decimal string; kept exact as a decimal string. */
function prepareInt64(value: unknown, where: string, min: bigint, max: bigint): string {
  let exact: bigint;
  if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) exact = BigInt(value);
  else if (typeof value === 'number' && Number.isInteger(value)) exact = BigInt(value);
  else throw bad(where, 'expected an integer (number or decimal string)', value);
  if (exact < min || exact > max) throw bad(where, 'integer out of range', value);
  return exact.toString();
}

function prepareInt32(value: unknown, where: string, min: number, max: number): number {
  const number = typeof value === 'string' && /^-?\d{1,10}$/.test(value) ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < min || number > max) throw bad(where, 'expected a 32-bit integer', value);
  return number;
}
