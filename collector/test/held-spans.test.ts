/**
 * How the trace window keeps a held trace's spans (held-spans.ts): a few fields each in slots, their
 * bytes where decoding put them (per request, one buffer for the possible roots and one for the
 * others) or moved into a buffer of the trace's own; the spans made again on flush exactly as they
 * were decoded; and how a buffer is let go once every downstream has copied every span in it
 * (BytesLease), never before. Only possible roots are held (HeldSpans); the others are forwarded as
 * they arrive, under the same leases.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Downstream } from '../src/exporter/downstream';
import { encodeTraceRequest } from '../src/exporter/otlp-encode';
import type { CollectedSpan } from '../src/otlp/otlp-model';
import { spanMessage } from '../src/otlp/span-message';
import type { SpanFacts } from '../src/processor/span-facts';
import { TraceProcessor } from '../src/processor/trace-processor';
import { HELD_SPAN_BYTES, HeldSpans } from '../src/processor/held-spans';
import { TraceBuffer } from '../src/processor/trace-buffer';
import { decodeTraceRequest } from '../src/receiver/otlp-decode';
import { BUFFER_BYTES, SPAN_BYTES } from '../src/otlp/received-span';
import { decodedSpans } from './support/decoded-spans';
import { downstreamOptionsFor, startDownstream } from './support/downstream-server';
import { Kind, newSpanId, newTraceId, toOtlpProtobuf, type SyntheticSpan } from './support/synthetic-trace';

const buffers: TraceBuffer[] = [];
afterEach(() => buffers.splice(0).forEach((buffer) => buffer.close()));

const decoded = (traceId: string, spans: Partial<SyntheticSpan>[]): CollectedSpan[] => decodedSpans(traceId, spans, 'SELECT orders');

/** What a span is, as the processor and the exporters read it. */
function viewOf(span: CollectedSpan) {
  return {
    raw: Buffer.from(span.raw).toString('hex'),
    origin: span.origin,
    traceId: span.traceId,
    spanId: span.spanId,
    parentSpanId: span.parentSpanId,
    name: span.name,
    kind: span.kind,
    flags: span.flags,
    hasParent: span.hasParent,
    markedRoot: span.markedRoot,
    startNs: span.startNs,
    endNs: span.endNs,
    attributes: span.attributes,
  };
}

/** A window that keeps what it hands on: the spans of each flush and their records, the spans forwarded at once. */
function windowOf(copiesPerSpan: number, flushed: CollectedSpan[][], forwarded: CollectedSpan[] = [], records: SpanFacts[][] = []): TraceBuffer {
  const buffer = new TraceBuffer({
    graceMs: 600_000,
    maxWaitMs: 600_000,
    maxTraces: 100,
    maxSpansPerTrace: 1000,
    copiesPerSpan,
    onFlush: (spans, _reason, facts) => {
      flushed.push(spans);
      records.push(facts);
    },
    onForward: (spans) => forwarded.push(...spans),
    onError: (error) => {
      throw error;
    },
  });
  buffers.push(buffer);
  return buffer;
}

describe('a held trace', () => {
  it('gives back its spans as they were decoded, from requests of any size, whatever their kind, flags and marks', () => {
    const traceId = newTraceId();
    const requests = [
      decoded(traceId, [{ kind: Kind.SERVER, parentSpanId: undefined, attributes: { 'http.route': '/orders/:id' } }]),
      // A kind no OTLP version defines yet is kept as sent; flags beyond 31 bits too.
      decoded(traceId, [{ kind: 9, flags: 0x8000_0301 }, { attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT 1' } }]),
      decoded(traceId, [{ kind: Kind.INTERNAL, attributes: { 'request_budget.root': true, 'x.other': 'kept in the bytes' } }]),
      decoded(
        traceId,
        Array.from({ length: 40 }, (_, index) => ({ name: `span ${index}`, attributes: { 'db.rows_returned': index } })),
      ),
    ];
    const spans = requests.flat();
    const expected = spans.map(viewOf);
    const held = new HeldSpans();
    for (const span of spans) held.add(span, 0);
    expect(held.count).toBe(44);
    const again = held.spans(traceId);
    expect(again.map(viewOf)).toEqual(expected);
    expect(again.map((span) => span.kind).slice(0, 3)).toEqual([Kind.SERVER, 9, Kind.CLIENT]);
    expect(again[1]!.flags).toBe(0x8000_0301);
    expect(again.filter((span) => span.markedRoot)).toHaveLength(1);
    // The bytes stay where decoding put them: one buffer per request, under its lease.
    expect(again.every((span, index) => span.raw.buffer === spans[index]!.raw.buffer && span.lease === spans[index]!.lease)).toBe(true);
    expect(new Set(again.map((span) => span.raw.buffer)).size).toBe(4);
    // Moved, they are the same spans in one buffer of the trace's own.
    held.moveBytes(0);
    const moved = held.spans(traceId);
    expect(moved.map(viewOf)).toEqual(expected);
    expect(new Set(moved.map((span) => span.raw.buffer)).size).toBe(1);
    expect(spans.some((span) => span.raw.buffer === moved[0]!.raw.buffer)).toBe(false);
  });

  it('is charged, per span, its slots and what decoding charged beyond the span object; a moved trace its buffer too', () => {
    const traceId = newTraceId();
    const spans = [...decoded(traceId, [{}]), ...decoded(traceId, [{}, {}])];
    const held = new HeldSpans();
    for (const span of spans) held.add(span, 0);
    const charged = spans.reduce((sum, span) => sum + HELD_SPAN_BYTES + span.estimatedBytes - SPAN_BYTES, 0);
    expect(held.heldBytes).toBe(charged);
    // Decoding charged each request's buffer to its first span.
    expect(spans[1]!.estimatedBytes - spans[2]!.estimatedBytes).toBeGreaterThanOrEqual(BUFFER_BYTES);
    held.moveBytes(0);
    expect(held.heldBytes).toBe(charged + BUFFER_BYTES);
    expect(held.spans(traceId).map((span) => span.estimatedBytes)).toEqual(spans.map((span, index) => span.estimatedBytes + (index === 0 ? BUFFER_BYTES : 0)));
  });
});

describe("a span whose bytes are not in its lease's buffer", () => {
  it('is kept in a buffer of its own, the copies held on its request moved onto it', () => {
    const flushed: CollectedSpan[][] = [];
    const buffer = windowOf(1, flushed);
    const traceId = newTraceId();
    // Possible roots: held whole.
    const [alone, other] = decoded(traceId, [{ kind: Kind.SERVER }, { kind: Kind.SERVER }]);
    // Its bytes replaced by a copy (as an edit would): the request's lease no longer covers them.
    const copied = Object.assign(Object.create(alone!) as CollectedSpan, { raw: Buffer.from(alone!.raw) });
    buffer.add([copied, other!]);
    buffer.flushAll();
    const [again, otherAgain] = flushed[0]!;
    expect(again!.raw.equals(alone!.raw)).toBe(true);
    expect(again!.raw.buffer).not.toBe(alone!.raw.buffer);
    expect(again!.raw.buffer.byteLength).toBe(alone!.raw.length);
    // The request's buffer goes with its other span's copy; the copied span's with its own.
    otherAgain!.bytesCopied();
    expect(alone!.raw.length).toBe(0);
    expect(again!.raw.length).toBeGreaterThan(0);
    again!.bytesCopied();
    expect(again!.raw.length).toBe(0);
  });
});

describe("a request's buffer", () => {
  it('is let go only once every downstream has copied every span in it, roots with edits included', () => {
    const flushed: CollectedSpan[][] = [];
    const forwarded: CollectedSpan[] = [];
    const records: SpanFacts[][] = [];
    const buffer = windowOf(2, flushed, forwarded, records);
    const traceId = newTraceId();
    const rootId = newSpanId();
    const rootRequest = decoded(traceId, [
      { spanId: rootId, name: 'GET /orders', kind: Kind.SERVER, parentSpanId: undefined, attributes: { 'http.route': '/orders' } },
    ]);
    const childRequest = decoded(traceId, [
      { parentSpanId: rootId, attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT 1' } },
      { parentSpanId: rootId },
    ]);
    buffer.add(rootRequest);
    buffer.add(childRequest);
    // The children, which cannot be roots, are forwarded as they come; the root is held.
    expect(forwarded).toHaveLength(2);
    expect(forwarded.every((span, index) => span === childRequest[index])).toBe(true);
    buffer.flushAll();
    expect(flushed[0]).toHaveLength(1);
    expect(records[0]).toHaveLength(2);
    const rootBuffer = rootRequest[0]!.raw.buffer;
    // The root gets its cost record written (from the children's records): its bytes are new, elsewhere.
    new TraceProcessor().process(flushed[0]!, records[0]);
    const [root] = flushed[0]!;
    const children = forwarded;
    const spans = [root!, ...children];
    expect(root!.raw.buffer).not.toBe(rootBuffer);
    // One query among the children (SELECT 1): read from its record.
    expect(String(spanMessage(root!).attributes.find((attribute) => attribute.key === 'cost.db.queries')?.value?.intValue)).toBe('1');
    const lengths = spans.map((span) => span.raw.length);
    // The first downstream copies every span: the second still reads them whole.
    const first = encodeTraceRequest(spans);
    for (const span of spans) span.bytesCopied();
    expect(spans.map((span) => span.raw.length)).toEqual(lengths);
    expect(encodeTraceRequest(spans)).toEqual(first);
    expect(spans.map((span) => spanMessage(span).name)).toEqual(['GET /orders', 'SELECT orders', 'SELECT orders']);
    // The second copies the root and one child: the root's request buffer goes; the children's stays.
    root!.bytesCopied();
    children[0]!.bytesCopied();
    expect(rootBuffer.byteLength).toBe(0);
    expect(root!.raw.length).toBe(lengths[0]);
    expect(children.map((span) => span.raw.length)).toEqual(lengths.slice(1));
    // The last copy lets the children's buffer go at once.
    children[1]!.bytesCopied();
    expect(children.map((span) => span.raw.length)).toEqual([0, 0]);
  });

  it('is let go by a held trace whose spans move out, when the rest of the request is copied', () => {
    // One request (two bodies' ResourceSpans, as protobuf merges them): the roots of two traces, in
    // the request's buffer of possible roots. One is sent; the other's trace is still held.
    const [sentTrace, waiting] = [newTraceId(), newTraceId()];
    const body = (traceId: string) =>
      toOtlpProtobuf({
        traceId,
        baseNs: 1_000_000_000n,
        spans: [{ service: 'orders-py', name: 'x', kind: Kind.SERVER, spanId: newSpanId(), startUs: 0, endUs: 10 }],
      });
    const request = decodeTraceRequest(Buffer.concat([body(sentTrace), body(waiting)]), 'protobuf').spans;
    expect(request.map((span) => span.traceId)).toEqual([sentTrace, waiting]);
    expect(request[0]!.lease).toBe(request[1]!.lease);
    // As the trace window takes them in with one downstream: one copy held per span.
    for (const span of request) span.lease!.hold(1);
    const held = new HeldSpans();
    held.add(request[1]!, 1);
    const charged = held.heldBytes;
    expect(charged).toBe(HELD_SPAN_BYTES + request[1]!.estimatedBytes - SPAN_BYTES);
    request[0]!.bytesCopied();
    // The waiting trace still holds the request's buffer...
    expect(request[0]!.raw.length).toBeGreaterThan(0);
    // ...until its span moves out: the buffer goes. The moved trace is charged its buffer.
    held.moveBytes(1);
    expect(request.map((span) => span.raw.length)).toEqual([0, 0]);
    expect(held.heldBytes).toBe(charged + BUFFER_BYTES);
    // A span of the trace that comes later is in its request's buffer until the next move, which
    // leaves the spans moved before where they are.
    const later = decodeTraceRequest(body(waiting), 'protobuf').spans;
    later[0]!.lease!.hold(1);
    held.add(later[0]!, 1);
    const firstMoved = held.spans(waiting)[0]!.raw.buffer;
    expect(held.spans(waiting)[1]!.raw.buffer).toBe(later[0]!.raw.buffer);
    held.moveBytes(1);
    expect(later[0]!.raw.length).toBe(0);
    expect(held.heldBytes).toBe(charged + 2 * BUFFER_BYTES + (later[0]!.estimatedBytes + HELD_SPAN_BYTES - SPAN_BYTES));
    const moved = held.spans(waiting);
    expect(moved[0]!.raw.buffer).toBe(firstMoved);
    expect(moved[1]!.raw.buffer).not.toBe(firstMoved);
    expect(moved.map((span) => spanMessage(span).traceId)).toEqual([Buffer.from(waiting, 'hex'), Buffer.from(waiting, 'hex')]);
    // Each moved span is under one lease holding one copy for it: one copy each lets its buffer go.
    for (const span of moved) span.bytesCopied();
    expect(moved.map((span) => span.raw.length)).toEqual([0, 0]);
  });

  it('is let go by a trace whose roots keep coming: held past twice its grace period, its bytes move out', async () => {
    // One request with the roots of two traces: `open` gets a new root every 25 ms (each moves its
    // deadline on), `done` is judged after its grace period. Moved after a second (twice the grace
    // period, at least a second), `open` no longer keeps the request's buffer once `done` is copied.
    const open = newTraceId();
    const done = newTraceId();
    const flushed: CollectedSpan[][] = [];
    const buffer = new TraceBuffer({
      graceMs: 300,
      maxWaitMs: 10_000,
      maxTraces: 100,
      maxSpansPerTrace: 1000,
      copiesPerSpan: 1,
      onFlush: (spans) => flushed.push(spans),
      onForward: () => {},
      onError: (error) => {
        throw error;
      },
    });
    buffers.push(buffer);
    const rootOf = (traceId: string) =>
      toOtlpProtobuf({
        traceId,
        baseNs: 1_000_000_000n,
        spans: [{ service: 'orders-py', name: 'GET /', kind: Kind.SERVER, spanId: newSpanId(), startUs: 0, endUs: 10 }],
      });
    // Two encoded requests side by side are one request (repeated fields concatenate).
    const request = decodeTraceRequest(Buffer.concat([rootOf(open), rootOf(done)]), 'protobuf').spans;
    expect(request.map((span) => span.traceId)).toEqual([open, done]);
    expect(request[0]!.raw.buffer).toBe(request[1]!.raw.buffer);
    const sent = Buffer.from(request[0]!.raw);
    buffer.add(request);
    const firstBuffer = request[0]!.raw.buffer;
    const started = Date.now();
    while (Date.now() - started < 1400) {
      buffer.add(decoded(open, [{ kind: Kind.CONSUMER, parentSpanId: undefined }]));
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    // `done` was judged and copied long ago; `open` is still held, its bytes moved out.
    const judged = flushed.find((spans) => spans[0]!.traceId === done)!;
    judged.forEach((span) => span.bytesCopied());
    expect(flushed.some((spans) => spans[0]!.traceId === open)).toBe(false);
    await expect.poll(() => firstBuffer.byteLength, { timeout: 2000 }).toBe(0);
    buffer.flushAll();
    const held = flushed.find((spans) => spans[0]!.traceId === open)!;
    expect(held.length).toBeGreaterThan(2);
    expect(held[0]!.raw.equals(sent)).toBe(true);
  });

  it('is never read once let go: the encoder and the message reader refuse a span without bytes, naming its trace', () => {
    const flushed: CollectedSpan[][] = [];
    const forwarded: CollectedSpan[] = [];
    const buffer = windowOf(1, flushed, forwarded);
    const traceId = newTraceId();
    // A root, held until the flush, and a child, forwarded at once: each in a buffer of its own kind.
    buffer.add(decoded(traceId, [{ kind: Kind.SERVER, parentSpanId: undefined }, {}]));
    buffer.flushAll();
    const spans = [...flushed[0]!, ...forwarded];
    expect(spans.map((span) => span.kind)).toEqual([Kind.SERVER, Kind.CLIENT]);
    for (const span of spans) {
      span.bytesCopied();
      expect(() => encodeTraceRequest([span])).toThrow(`span of trace ${traceId}: its bytes were let go before it was encoded`);
      expect(() => spanMessage(span)).toThrow(`span of trace ${traceId}: its bytes were let go before it was read`);
    }
  });

  it('without downstreams to copy it, is left to the garbage collector: copies do not let it go', () => {
    const flushed: CollectedSpan[][] = [];
    const forwarded: CollectedSpan[] = [];
    const buffer = windowOf(0, flushed, forwarded);
    buffer.add(decoded(newTraceId(), [{ kind: Kind.SERVER, parentSpanId: undefined }, {}]));
    buffer.flushAll();
    const spans = [...flushed[0]!, ...forwarded];
    expect(spans.map((span) => span.kind)).toEqual([Kind.SERVER, Kind.CLIENT]);
    const lengths = spans.map((span) => span.raw.length);
    expect(lengths.every((length) => length > 0)).toBe(true);
    for (const span of spans) span.bytesCopied();
    expect(spans.map((span) => span.raw.length)).toEqual(lengths);
  });
});

describe('a downstream', () => {
  it('says each span copied once, when it first encodes its batch, not again when it retries it', async () => {
    // Two 503s, then 200: the batch is sent three times, encoded once.
    const server = await startDownstream(undefined, (attempt) => ({ status: attempt < 2 ? 503 : 200 }));
    const copied = new Map<string, number>();
    const spans = decoded(newTraceId(), [{}, {}, {}]).map((span) =>
      Object.assign(Object.create(span) as CollectedSpan, { bytesCopied: () => copied.set(span.spanId, (copied.get(span.spanId) ?? 0) + 1) }),
    );
    let encodings = 0;
    const forwarded: number[] = [];
    const downstream = new Downstream(
      downstreamOptionsFor(server, {
        encode: (batch) => {
          encodings += 1;
          return { body: encodeTraceRequest(batch), contentType: 'application/x-protobuf' };
        },
        onForwarded: (count) => forwarded.push(count),
      }),
    );
    try {
      downstream.enqueue(spans);
      await expect.poll(() => forwarded, { timeout: 5000 }).toEqual([3]);
      expect(server.attempts).toHaveLength(3);
      expect(encodings).toBe(1);
      expect([...copied.values()]).toEqual([1, 1, 1]);
      expect(server.spans).toHaveLength(3);
    } finally {
      await downstream.drain(Date.now());
      await server.close();
    }
  });
});
