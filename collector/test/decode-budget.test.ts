/**
 * What decoding may cost and keep: a span the trace window holds, or hands on, has no view into
 * its request body (the body is garbage once its spans are taken in, whatever was kept), a body that would decode into millions of entries
 * is refused before they exist, and the memory a span is charged with is not below what it holds.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { MAX_ENTRIES_PER_REQUEST } from '../src/otlp/entry-budget';
import type { CollectedSpan } from '../src/otlp/otlp-model';
import { HELD_SPAN_BYTES } from '../src/processor/held-spans';
import { SPAN_BYTES } from '../src/otlp/received-span';
import { TRACE_BYTES, TraceBuffer } from '../src/processor/trace-buffer';
import { decodeTraceRequest, OtlpDecodeError } from '../src/receiver/otlp-decode';
import { spanMessage } from '../src/otlp/span-message';
import { Kind, newSpanId, newTraceId, toOtlpJson, toOtlpProtobuf } from './support/synthetic-trace';
import { emptyAttributesRequest, lengthDelimited, requestOfSpan, validSpanBytes } from './support/wire-bytes';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;

/** One valid span with a bytes attribute, an event and a link, and `unknownBytes` of an unknown field (number 100) after it or inside it. */
function spanWithUnknownField(unknownBytes: number, where: 'request' | 'span' = 'request'): { body: Buffer; traceId: string; spanBytes: Buffer } {
  const link = { traceId: Buffer.alloc(16, 7), spanId: Buffer.alloc(8, 8), attributes: [{ key: 'l', value: { bytesValue: Buffer.from('link') } }] };
  const { bytes, traceId } = validSpanBytes({
    parentSpanId: Buffer.alloc(8, 9),
    attributes: [{ key: 'payload', value: { bytesValue: Buffer.from('0123456789') } }],
    events: [{ timeUnixNano: 1_500_000, name: 'e', attributes: [{ key: 'b', value: { bytesValue: Buffer.from('event') } }] }],
    links: [link],
  });
  const unknown = lengthDelimited(100, Buffer.alloc(unknownBytes, 0x61));
  const body = where === 'request' ? Buffer.concat([requestOfSpan(bytes), unknown]) : requestOfSpan(Buffer.concat([bytes, unknown]));
  return { body, traceId, spanBytes: bytes };
}

/** Every Uint8Array under `value`, with where it is. */
function byteArraysIn(value: unknown, path = 'span', found: { path: string; bytes: Uint8Array }[] = []): { path: string; bytes: Uint8Array }[] {
  if (value instanceof Uint8Array) found.push({ path, bytes: value });
  else if (value !== null && typeof value === 'object')
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) byteArraysIn(item, `${path}.${key}`, found);
  return found;
}

/**
 * The JS heap and the memory of ArrayBuffers (where the window keeps span bytes), after full GCs:
 * the memory of ArrayBuffers collected is given back by a sweeper after the GC, so it is read once
 * two readings agree.
 */
async function heldMemory(): Promise<number> {
  let last = -1;
  for (let attempt = 0; attempt < 20; attempt += 1) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
    const usage = process.memoryUsage();
    const now = usage.heapUsed + usage.arrayBuffers;
    if (Math.abs(now - last) < 64 * 1024) return now;
    last = now;
  }
  return last;
}

/**
 * A trace window that holds what it is given until flushAll; `handOn` gets what it hands on, the
 * spans it forwards at once and those it flushes.
 */
function window(handOn: (spans: CollectedSpan[]) => void = () => {}): TraceBuffer {
  return new TraceBuffer({
    graceMs: 600_000,
    maxWaitMs: 600_000,
    maxTraces: 100_000,
    maxSpansPerTrace: 10_000,
    onFlush: handOn,
    onForward: handOn,
    onError: (error) => {
      throw error;
    },
  });
}

/** `spans` through a trace window: as it hands them on. */
function throughWindow(spans: CollectedSpan[]): CollectedSpan[] {
  const flushed: CollectedSpan[] = [];
  const buffer = window((trace) => flushed.push(...trace));
  buffer.add(spans);
  buffer.flushAll();
  return flushed;
}

describe('a span taken in', () => {
  it.each(['request', 'span'] as const)(
    'keeps no view into its request body, and none of an unknown field in the %s: its message is a copy of the known bytes',
    (where) => {
      const { body, traceId, spanBytes } = spanWithUnknownField(10 * MiB, where);
      const [span] = throughWindow(decodeTraceRequest(body, 'protobuf').spans);
      expect(span!.traceId).toBe(traceId);
      // Its byte arrays are its message and the buffer of its request's spans it is in, which holds
      // their kept bytes only: not a view into the body (which would keep the whole 10 MiB alive).
      const arrays = byteArraysIn(span);
      expect(arrays.map(({ path }) => path)).toEqual(['span.raw', 'span.lease.bytes']);
      expect(arrays[1]!.bytes.buffer).toBe(span!.raw.buffer);
      expect(span!.raw.buffer.byteLength).toBe(spanBytes.length);
      // The message kept is the span's bytes as sent, without the unknown field.
      expect(span!.raw.equals(spanBytes)).toBe(true);
      const message = spanMessage(span!);
      expect(Buffer.from(message.attributes[0]!.value!.bytesValue!).toString()).toBe('0123456789');
      expect(Buffer.from(message.events[0]!.attributes[0]!.value!.bytesValue!).toString()).toBe('event');
      expect(span!.estimatedBytes).toBeLessThan(2048);
    },
  );

  it('lets the body be collected while the span is held', async () => {
    const collected: string[] = [];
    const registry = new FinalizationRegistry((name: string) => collected.push(name));
    const decode = (): TraceBuffer => {
      const { body } = spanWithUnknownField(10 * MiB);
      registry.register(body.buffer, 'protobuf body');
      const json = Buffer.from(
        JSON.stringify(toOtlpJson(traceOfOne())).replace('"attributes":[', `"attributes":[{"key":"pad","value":{"stringValue":"${'x'.repeat(MiB)}"}},`),
      );
      registry.register(json.buffer, 'json body');
      const buffer = window((spans) => flushed.push(...spans));
      buffer.add(decodeTraceRequest(body, 'protobuf').spans);
      buffer.add(decodeTraceRequest(json, 'json').spans);
      return buffer;
    };
    const flushed: CollectedSpan[] = [];
    const held = decode();
    expect(held.spanCount).toBe(2);
    for (let attempt = 0; attempt < 50 && collected.length < 2; attempt += 1) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(collected.sort()).toEqual(['json body', 'protobuf body']);
    // What was held is whole.
    held.flushAll();
    expect(flushed.map((span) => spanMessage(span).name)).toEqual(['GET /orders', 'GET /']);
  });
});

/**
 * One trace of `spans` spans as an OTLP protobuf body: a SERVER root (held whole by the trace
 * window) and CLIENT spans beneath it (forwarded at once, their records held).
 */
function clientTrace(spans: number, attributes: () => Record<string, string | number | boolean>): Uint8Array {
  const rootId = newSpanId();
  return toOtlpProtobuf({
    traceId: newTraceId(),
    baseNs: 1_000_000_000n,
    spans: Array.from({ length: spans }, (_, index) => ({
      service: 'orders-py',
      name: 'GET /orders',
      kind: index === 0 ? Kind.SERVER : Kind.CLIENT,
      spanId: index === 0 ? rootId : newSpanId(),
      parentSpanId: index === 0 ? undefined : rootId,
      startUs: 0,
      endUs: 5,
      attributes: attributes(),
    })),
  });
}

function traceOfOne() {
  return {
    traceId: newTraceId(),
    baseNs: 1_000_000_000n,
    spans: [{ service: 'orders-py', name: 'GET /', kind: Kind.SERVER, spanId: newSpanId(), startUs: 0, endUs: 10, attributes: { 'http.route': '/' } }],
  };
}

describe('the decode budget', () => {
  const refusal = (body: Uint8Array, encoding: 'protobuf' | 'json'): { error: unknown; ms: number; heapMb: number } => {
    gc();
    const before = process.memoryUsage().heapUsed;
    const started = performance.now();
    let error: unknown;
    try {
      decodeTraceRequest(body, encoding);
    } catch (caught) {
      error = caught;
    }
    const ms = performance.now() - started;
    return { error, ms, heapMb: (process.memoryUsage().heapUsed - before) / MiB };
  };

  it('refuses 10 MiB of empty attributes in milliseconds, before they exist, naming the limit', () => {
    const body = emptyAttributesRequest(5 * MiB - 64);
    expect(body.length).toBeLessThanOrEqual(10 * MiB);
    const { error, ms, heapMb } = refusal(body, 'protobuf');
    expect(error).toBeInstanceOf(OtlpDecodeError);
    expect((error as Error).message).toBe(
      `request has more entries (spans, attributes, values, events, links) than the limit of ${MAX_ENTRIES_PER_REQUEST} entries per request; send smaller batches`,
    );
    // Decoding them took seconds and 2 GB for 12 such requests; the scan stops at the millionth.
    expect(ms).toBeLessThan(1000);
    expect(heapMb).toBeLessThan(20);
  });

  it('refuses a known field sent with another wire type at once, naming it', () => {
    // Attributes sent as varints: protobufjs read a length anyway and built an empty KeyValue each.
    const body = emptyAttributesRequest(5 * MiB - 64, 0);
    const { error, ms } = refusal(body, 'protobuf');
    expect((error as Error).message).toBe(
      'protobuf ExportTraceServiceRequest did not decode: Span.attributes (field 9) has wire type varint; length-delimited expected',
    );
    expect(ms).toBeLessThan(1000);
  });

  it('bounds the entries of a small body by its size: 1024 + one per 4 bytes', () => {
    const body = emptyAttributesRequest(3000);
    const budget = 1024 + Math.floor(body.length / 4);
    const { error } = refusal(body, 'protobuf');
    expect((error as Error).message).toBe(
      `request has more entries (spans, attributes, values, events, links) than the limit of ${budget} entries for a body of ${body.length} bytes (1024 + one per 4 bytes); send smaller batches`,
    );
    // Within it, the same shape decodes: request, resource spans, scope spans, span and 1000 attributes.
    expect(spanMessage(decodeTraceRequest(emptyAttributesRequest(1000), 'protobuf').spans[0]!).attributes).toHaveLength(1000);
  });

  it('counts the objects and arrays of a JSON body outside its strings', () => {
    const empties = `{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[${'{},'.repeat(3 * MiB)}{}]}]}]}]}`;
    const { error, ms } = refusal(Buffer.from(empties), 'json');
    expect((error as Error).message).toMatch(new RegExp(`than the limit of ${MAX_ENTRIES_PER_REQUEST} entries per request`));
    expect(ms).toBeLessThan(1000);
    // Braces and brackets inside strings (escaped quotes included) are text, not entries.
    const trace = traceOfOne();
    const text = JSON.stringify(toOtlpJson({ ...trace, spans: [{ ...trace.spans[0]!, attributes: { 'db.statement': '\\"{[' + '{['.repeat(20_000) } }] }));
    expect(decodeTraceRequest(Buffer.from(text), 'json').spans).toHaveLength(1);
  });

  it('counts the unknown fields it leaves out: interleaved with known ones they are refused past the budget, and a few are dropped from the bytes kept', () => {
    // dropped_attributes_count = 0, then unknown field 17 = 0: 5 bytes, two fields.
    const pair = Buffer.from([0x50, 0x00, 0x88, 0x01, 0x00]);
    const { bytes } = validSpanBytes();
    const { error, ms, heapMb } = refusal(requestOfSpan(Buffer.concat([bytes, Buffer.alloc(2 * 1024 * 1024 * 5, pair)])), 'protobuf');
    expect((error as Error).message).toBe(
      `request has more entries (spans, attributes, values, events, links) than the limit of ${MAX_ENTRIES_PER_REQUEST} entries per request; send smaller batches`,
    );
    expect(ms).toBeLessThan(2000);
    expect(heapMb).toBeLessThan(100);
    const few = decodeTraceRequest(requestOfSpan(Buffer.concat([bytes, Buffer.alloc(1000 * 5, pair)])), 'protobuf').spans[0]!;
    // Kept: the span and the 1,000 known fields, without the 1,000 unknown ones (3 bytes each).
    expect(few.raw.equals(Buffer.concat([bytes, Buffer.alloc(1000 * 2, Buffer.from([0x50, 0x00]))]))).toBe(true);
  });

  it('lets a large realistic batch through: 5,000 spans of 20 attributes', () => {
    const traceId = newTraceId();
    const attributes = Object.fromEntries(Array.from({ length: 20 }, (_, index) => [`attribute.${index}`, index % 2 === 0 ? `value ${index}` : index]));
    const spans = Array.from({ length: 5000 }, () => ({
      service: 'orders-py',
      name: 'SELECT',
      kind: Kind.CLIENT,
      spanId: newSpanId(),
      startUs: 0,
      endUs: 5,
      attributes,
    }));
    expect(decodeTraceRequest(toOtlpProtobuf({ traceId, baseNs: 1_000_000_000n, spans }), 'protobuf').spans).toHaveLength(5000);
  });
});

/** 12,000 spans in traces of `spansPerTrace`, each trace in a request of its own. */
function smallTraces(spansPerTrace: number): Uint8Array[] {
  return Array.from({ length: Math.round(12_000 / spansPerTrace) }, () =>
    clientTrace(spansPerTrace, () => ({ 'http.request.method': 'GET', 'url.full': `http://orders/${newSpanId()}` })),
  );
}

/**
 * `bodies` taken into a trace window: what it estimates it holds, and what it actually held — what
 * it lets go of when it hands the traces on.
 */
async function windowHolding(bodies: Uint8Array[]): Promise<{ estimated: number; actual: number }> {
  const buffer = window();
  for (const body of bodies) buffer.add(decodeTraceRequest(body, 'protobuf').spans);
  bodies.length = 0;
  const holding = await heldMemory();
  const estimated = buffer.byteCount;
  buffer.flushAll();
  const actual = holding - (await heldMemory());
  buffer.close();
  return { estimated, actual };
}

describe('the memory a span is charged with', () => {
  it('is not below what the trace window holds for large traces of spans with 12 attributes, nor far above', async () => {
    const attributes = Object.fromEntries(
      Array.from({ length: 12 }, (_, index) => [`http.attribute.${index}`, index % 2 === 0 ? `value-${index}-${newSpanId()}` : index]),
    );
    const { estimated, actual } = await windowHolding(Array.from({ length: 5 }, () => clientTrace(4000, () => attributes)));
    // 5 roots held whole, 19,995 spans forwarded: their records (88 bytes in a chunk, 4 of a reference) held.
    expect(actual).toBeGreaterThan(20_000 * 88);
    expect(actual).toBeLessThan(20_000 * 500);
    expect(estimated).toBeGreaterThan(actual);
    expect(estimated).toBeLessThan(1.5 * actual);
  });

  it.each([1, 7])('is not below what spans handed on hold (as they wait for a downstream) in traces of %i span(s), nor far above', async (spansPerTrace) => {
    const bodies = smallTraces(spansPerTrace);
    let handedOn: CollectedSpan[] = [];
    const buffer = window((spans) => handedOn.push(...spans));
    for (const body of bodies) buffer.add(decodeTraceRequest(body, 'protobuf').spans);
    bodies.length = 0;
    buffer.flushAll();
    const holding = await heldMemory();
    const estimated = handedOn.reduce((sum, span) => sum + span.estimatedBytes, 0);
    handedOn = [];
    const actual = holding - (await heldMemory());
    expect(estimated).toBeGreaterThan(actual);
    expect(estimated).toBeLessThan(1.5 * actual);
  });

  it.each([1, 2, 7])('is not below what the trace window holds for traces of %i span(s), nor far above', async (spansPerTrace) => {
    // Each trace in a request of its own, as small traces come: the trace's own record, Map entry,
    // queue entries and id string count beside its spans.
    const { estimated, actual } = await windowHolding(smallTraces(spansPerTrace));
    expect(estimated).toBeGreaterThan(actual);
    expect(estimated).toBeLessThan(1.5 * actual);
  });

  it('is counted in the trace buffer while held and given back when flushed', () => {
    const flushed: number[] = [];
    const buffer = new TraceBuffer({
      graceMs: 10_000,
      maxWaitMs: 10_000,
      maxTraces: 2,
      maxSpansPerTrace: 100,
      onFlush: (spans) => flushed.push(spans.length),
      onForward: () => {},
      onError: (error) => {
        throw error;
      },
    });
    const traces = [traceOfOne(), traceOfOne(), traceOfOne()].map((trace) => decodeTraceRequest(toOtlpProtobuf(trace), 'protobuf').spans);
    buffer.add(traces[0]!);
    const first = buffer.byteCount;
    // The trace's own record, and its span: its slots and what decoding charged beyond its object.
    expect(first).toBe(TRACE_BYTES + HELD_SPAN_BYTES + traces[0]![0]!.estimatedBytes - SPAN_BYTES);
    expect(traces[0]![0]!.estimatedBytes).toBeGreaterThan(SPAN_BYTES + traces[0]![0]!.raw.length);
    buffer.add(traces[1]!);
    // The traces are alike: each is charged the same.
    expect(buffer.byteCount).toBe(2 * first);
    // A third trace flushes the oldest: its bytes leave with it.
    buffer.add(traces[2]!);
    expect(flushed).toEqual([1]);
    expect(buffer.byteCount).toBe(2 * first);
    buffer.flushAll();
    expect(buffer.byteCount).toBe(0);
  });
});
