/**
 * The span model the collector works on: each span keeps its Span message as bytes (forwarded as
 * they came, with what is written on roots spliced in; see span-edit.ts) beside the fields the
 * collector reads (hex ids, nanosecond times as bigint, attributes as a plain map for core's
 * classifier). The Wire* types are the decoded message, for what needs it whole (Zipkin).
 */
import type { Long } from 'protobufjs';
import type { AttributeMap } from '@request-budget/core';
import type { BytesLease } from './received-span';

/** A 64-bit integer as protobufjs holds it (Long), or as the collector writes it. */
export type Int64 = Long | number | string;

/** opentelemetry.proto.common.v1.AnyValue as decoded; `value` names the member that is set. */
export interface WireAnyValue {
  value?: string;
  stringValue?: string | null;
  boolValue?: boolean | null;
  intValue?: Int64 | null;
  doubleValue?: number | null;
  arrayValue?: { values?: WireAnyValue[] } | null;
  kvlistValue?: { values?: WireKeyValue[] } | null;
  bytesValue?: Uint8Array | null;
}

export interface WireKeyValue {
  key: string;
  value?: WireAnyValue | null;
}

export interface WireEvent {
  timeUnixNano: Int64;
  name: string;
  attributes: WireKeyValue[];
  droppedAttributesCount?: number;
}

export interface WireStatus {
  message?: string;
  code?: number;
}

/** opentelemetry.proto.trace.v1.Span as decoded (other fields are carried along untouched). */
export interface WireSpan {
  traceId: Uint8Array;
  spanId: Uint8Array;
  parentSpanId: Uint8Array;
  flags?: number;
  name: string;
  kind: number;
  startTimeUnixNano: Int64;
  endTimeUnixNano: Int64;
  attributes: WireKeyValue[];
  events: WireEvent[];
  status?: WireStatus | null;
  droppedAttributesCount?: number;
  droppedEventsCount?: number;
  droppedLinksCount?: number;
}

/**
 * A message's bytes. A span's are a view into a buffer of its request's own (outside the JS heap:
 * not copied or marked by the garbage collector, and no view into the body) — one for the
 * request's spans that may be roots, one for the others (span-decode.ts) — or of its trace's own
 * when the trace window held it long (held-spans.ts).
 */
export type MessageBytes = Buffer;

/**
 * A resource's or scope's message bytes, shared by the spans of a request: a one-byte string, a
 * copy in the JS heap of its exact size (no view into the body, no share of Buffer's pool), written
 * back byte for byte with Buffer#latin1Write.
 */
export type GroupBytes = string;

/** One ResourceSpans of a request: shared by the spans that came in it. */
export interface ResourceGroup {
  /** The Resource message as it came (fields unknown here left out); undefined when absent. */
  readonly raw: GroupBytes | undefined;
  readonly schemaUrl: string;
  /** Resource attributes as a plain map (service.name, process.pid…). */
  readonly attributes: Readonly<Record<string, unknown>>;
  /** Stable text of the resource attributes: spans with the same key come from one process. */
  readonly processKey: string;
  /** `service.name`, or `unknown_service` when the resource has none. */
  readonly serviceName: string;
}

/** One ScopeSpans of a request: shared by the spans that came in it. */
export interface ScopeGroup {
  readonly resource: ResourceGroup;
  /** The InstrumentationScope message as it came; undefined when absent. */
  readonly raw: GroupBytes | undefined;
  readonly schemaUrl: string;
  readonly scopeName: string;
}

/** A received span. */
export interface CollectedSpan {
  /**
   * The Span message as it is forwarded: as received (fields unknown here left out), with the
   * attributes, events and status written on a root spliced in once it is processed.
   */
  raw: MessageBytes;
  readonly origin: ScopeGroup;
  /** Lowercase hex: 32 characters. */
  readonly traceId: string;
  /**
   * Lowercase hex: 16 characters. This, the parent id, the times and the attributes are read from
   * `raw` when first asked for (while the trace is judged): a span held in the trace window keeps
   * none of them.
   */
  readonly spanId: string;
  /** Lowercase hex, '' when the span has no parent. */
  readonly parentSpanId: string;
  /** Has a parent span id (not empty, not all zero): read at decoding. */
  readonly hasParent: boolean;
  readonly name: string;
  readonly kind: number;
  /** Span.flags (W3C trace flags and the parent-is-remote bits); 0 when not sent. */
  readonly flags: number;
  readonly startNs: bigint;
  readonly endNs: bigint;
  /**
   * The span's attributes that request-budget reads or writes (core's CONTRACT_ATTRIBUTES), as
   * plain values: ints as numbers (bigint beyond 2^53), arrays, objects. Other attributes are not
   * read here; they stay in `raw`, forwarded as they came.
   */
  readonly attributes: AttributeMap;
  /** Carries `request_budget.root = true` (a job root or measurement the SDK marked): read at decoding. */
  readonly markedRoot: boolean;
  /**
   * Lets the ids, times and attribute map read for judging go once the trace is judged (its edits
   * are in `raw` then): a span waiting for a downstream holds its bytes only, as estimated. Read
   * again from `raw` if asked for.
   */
  releaseAttributes(): void;
  /**
   * Whose memory `raw` is in (the buffer of the request it came in, or of its trace once moved):
   * what the trace window holds a copy on for each downstream.
   */
  readonly lease?: BytesLease;
  /**
   * Each of the span's downstreams calls this once it has copied the span's bytes into a request
   * (none reads them after). Once every span in a buffer is copied by all of them, the buffer is let
   * go at once (BytesLease), not at the next full collection.
   */
  bytesCopied(): void;
  /**
   * Memory the span holds as an object waiting for a downstream, estimated when it was decoded (see
   * span-decode.ts); the first span of a resource and scope in a request also carries theirs, and
   * the first of a flushed trace its buffer's. Grows with what is written on a root. Held in the
   * trace window, a span is charged less (HeldSpans).
   */
  estimatedBytes: number;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);

/** A 64-bit wire integer as a bigint, signed or not. */
export function int64ToBigInt(value: Int64 | null | undefined, unsigned: boolean): bigint {
  if (value === null || value === undefined) return 0n;
  if (typeof value === 'number') return BigInt(Math.trunc(value));
  if (typeof value === 'string') return BigInt(value);
  const bits = (BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0);
  return unsigned || value.unsigned ? BigInt.asUintN(64, bits) : BigInt.asIntN(64, bits);
}

/** An AnyValue as a plain value: ints as numbers when safe (bigint beyond), bytes as base64. */
export function anyValueToPlain(value: WireAnyValue | null | undefined): unknown {
  if (value === null || value === undefined) return null;
  switch (value.value ?? memberOf(value)) {
    case 'stringValue':
      return value.stringValue ?? '';
    case 'boolValue':
      return value.boolValue ?? false;
    case 'intValue': {
      const exact = int64ToBigInt(value.intValue, false);
      return exact >= MIN_SAFE && exact <= MAX_SAFE ? Number(exact) : exact;
    }
    case 'doubleValue':
      return value.doubleValue ?? 0;
    case 'arrayValue':
      return (value.arrayValue?.values ?? []).map(anyValueToPlain);
    case 'kvlistValue':
      return keyValuesToPlain(value.kvlistValue?.values);
    case 'bytesValue':
      return Buffer.from(value.bytesValue ?? new Uint8Array(0)).toString('base64');
    default:
      return null;
  }
}

const ANY_VALUE_MEMBERS = ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'] as const;

/** The member set on an AnyValue built here as a plain object (decoded messages name it in `value`). */
function memberOf(value: WireAnyValue): string | undefined {
  return ANY_VALUE_MEMBERS.find((member) => value[member] !== undefined && value[member] !== null);
}

/** A KeyValue list as a plain map (the last of duplicate keys wins, as in the SDKs). */
export function keyValuesToPlain(list: readonly WireKeyValue[] | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of list ?? []) out[kv.key] = anyValueToPlain(kv.value);
  return out;
}

/** How a number is written: the contract's type for cost attributes, else as the JS SDK does. */
export type NumberType = 'int' | 'double';

/** A plain value as an AnyValue. Numbers are ints when whole unless `numberType` says double. */
export function plainToAnyValue(value: unknown, numberType?: NumberType): WireAnyValue {
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (typeof value === 'bigint') return { intValue: value.toString() };
  if (typeof value === 'number') {
    const asInt = numberType === 'int' || (numberType === undefined && Number.isInteger(value));
    return asInt && Number.isSafeInteger(value) ? { intValue: value } : { doubleValue: value };
  }
  if (Array.isArray(value)) return { arrayValue: { values: value.map((item) => plainToAnyValue(item)) } };
  return {};
}

/** Stable text for a plain map: sorted keys, bigints as text. */
export function canonicalText(map: Readonly<Record<string, unknown>>): string {
  return JSON.stringify(
    Object.keys(map)
      .sort()
      .map((key) => [key, map[key]]),
    (_key, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value),
  );
}
