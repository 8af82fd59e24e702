import zlib from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SpanKind, SpanStatusCode, context, trace, type Attributes, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SimpleSpanProcessor, TracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';
import { ExportTraceServiceRequest, ExportTraceServiceResponse } from '../support/otlp-schema';

type Encoding = 'protobuf' | 'json';

function makeExporter(encoding: Encoding, url: string, gzip = false): SpanExporter {
  const config = { url, compression: gzip ? CompressionAlgorithm.GZIP : CompressionAlgorithm.NONE };
  return encoding === 'protobuf' ? new ProtoTraceExporter(config) : new JsonTraceExporter(config);
}

/** Record spans with a real SDK pipeline and flush them to the exporter (rejects if the export fails). */
async function recordAndExport(exporter: SpanExporter, record: (tracer: Tracer) => void): Promise<void> {
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'support-selftest' }),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  try {
    record(provider.getTracer('selftest-scope', '1.2.3'));
    await provider.forceFlush();
  } finally {
    await provider.shutdown();
  }
}

/** Export one SERVER span carrying `attributes`; returns the flush outcome. */
function exportAttributes(encoding: Encoding, url: string, attributes: Attributes): Promise<void> {
  return recordAndExport(makeExporter(encoding, url), (tracer) => tracer.startSpan('attrs', { kind: SpanKind.SERVER, attributes }).end());
}

function post(url: string, body: Uint8Array | string, headers: Record<string, string>) {
  return fetch(url, { method: 'POST', body, headers, signal: AbortSignal.timeout(5000) });
}

let receiver: OtlpReceiver;
beforeAll(async () => {
  receiver = await startOtlpReceiver();
});
afterAll(() => receiver.close());
beforeEach(() => receiver.clear());

describe.each([
  { encoding: 'protobuf', gzip: false },
  { encoding: 'protobuf', gzip: true },
  { encoding: 'json', gzip: false },
  { encoding: 'json', gzip: true },
] as const)('real OTLP exporter, $encoding (gzip: $gzip)', ({ encoding, gzip }) => {
  it('decodes the budget attributes, their OTLP types, the event, ids, status and resource', async () => {
    const ids: { trace?: string; server?: string; client?: string } = {};
    const before = BigInt(Date.now()) * 1_000_000n;
    await recordAndExport(makeExporter(encoding, receiver.tracesUrl, gzip), (tracer) => {
      const server = tracer.startSpan('GET /users/:id', {
        kind: SpanKind.SERVER,
        attributes: {
          'cost.db.queries': 3,
          'cost.db.time_ms': 1.5,
          'budget.violations': ['a', 'b'],
          'budget.breached': true,
        },
      });
      server.addEvent('budget.breach', { metric: 'db.queries', value: 41, limit: 10, severity: 'critical', ratio: 4.1 });
      server.setStatus({ code: SpanStatusCode.ERROR, message: 'over budget' });
      const client = tracer.startSpan('SELECT', { kind: SpanKind.CLIENT }, trace.setSpan(context.active(), server));
      client.end();
      server.end();
      ids.trace = server.spanContext().traceId;
      ids.server = server.spanContext().spanId;
      ids.client = client.spanContext().spanId;
    });

    const spans = await receiver.waitFor((all) => all.length === 2);
    // SimpleSpanProcessor exports each span in its own request.
    expect(receiver.requests).toEqual({ json: 0, protobuf: 0, [encoding]: 2, gzip: gzip ? 2 : 0, rejected: 0 });

    const [server] = receiver.serverSpans();
    expect(server).toBeDefined();
    expect(server!.attributes).toEqual({
      'cost.db.queries': 3,
      'cost.db.time_ms': 1.5,
      'budget.violations': ['a', 'b'],
      'budget.breached': true,
    });
    expect(server!.attributeTypes).toEqual({
      'cost.db.queries': 'int',
      'cost.db.time_ms': 'double',
      'budget.violations': 'array',
      'budget.breached': 'bool',
    });
    expect(server!.events).toHaveLength(1);
    expect(server!.events[0]).toMatchObject({
      name: 'budget.breach',
      attributes: { metric: 'db.queries', value: 41, limit: 10, severity: 'critical', ratio: 4.1 },
      attributeTypes: { metric: 'string', value: 'int', limit: 'int', severity: 'string', ratio: 'double' },
    });
    expect(server).toMatchObject({
      name: 'GET /users/:id',
      kind: 2,
      traceId: ids.trace,
      spanId: ids.server,
      parentSpanId: '',
      status: { code: 2, message: 'over budget' },
      scope: 'selftest-scope',
      encoding,
    });
    expect(server!.resource['service.name']).toBe('support-selftest');
    expect(server!.startTimeUnixNano).toBeGreaterThanOrEqual(before - 1_000_000n);
    expect(server!.endTimeUnixNano).toBeGreaterThanOrEqual(server!.startTimeUnixNano);

    const client = spans.find((s) => s.name === 'SELECT')!;
    expect(client).toMatchObject({ kind: 3, traceId: ids.trace, spanId: ids.client, parentSpanId: ids.server });
    expect(client.status).toEqual({ code: 0 });
  });
});

describe('how otlp-transformer 0.300 encodes JS numbers (observed, pinned here so an upgrade that changes it shows up)', () => {
  it.each(['protobuf', 'json'] as const)('%s: integral numbers become intValue, 2.0 included', async (encoding) => {
    await exportAttributes(encoding, receiver.tracesUrl, { two: 2.0, zero: 0, negative: -5, half: 0.5, ints: [1, 2], mixed: [1.5, 2] });
    const [span] = await receiver.waitFor((all) => all.length === 1);
    expect(span!.attributes).toEqual({ two: 2, zero: 0, negative: -5, half: 0.5, ints: [1, 2], mixed: [1.5, 2] });
    expect(span!.attributeTypes).toMatchObject({ two: 'int', zero: 'int', negative: 'int', half: 'double' });
  });

  it('protobuf: int64 beyond 2^53 is exact, NaN stays a double, and integers past int64 become doubles', async () => {
    await exportAttributes('protobuf', receiver.tracesUrl, { big: 2 ** 60, nan: NaN, huge: 1e300, min: -(2 ** 63) });
    const [span] = await receiver.waitFor((all) => all.length === 1);
    expect(span!.attributes).toEqual({ big: 2n ** 60n, nan: NaN, huge: 1e300, min: -(2n ** 63n) });
    expect(span!.attributeTypes).toEqual({ big: 'int', nan: 'double', huge: 'double', min: 'int' });
  });

  it("json: int64 beyond 2^53 arrives as the double's shortest decimal, NaN arrives as an empty value", async () => {
    await exportAttributes('json', receiver.tracesUrl, { big: 2 ** 60, nan: NaN });
    const [span] = await receiver.waitFor((all) => all.length === 1);
    // JSON.stringify(2 ** 60) === '1152921504606847000', which is not 2^60 (1152921504606846976).
    expect(span!.attributes).toEqual({ big: 1152921504606847000n, nan: null });
    expect(span!.attributeTypes).toEqual({ big: 'int', nan: 'empty' });
  });

  it('json: an integral number past int64 is sent as intValue 1e+300, which the schema rejects', async () => {
    await expect(exportAttributes('json', receiver.tracesUrl, { huge: 1e300 })).rejects.toBeDefined();
    expect(receiver.spans).toHaveLength(0);
    expect(receiver.rejections).toEqual([{ status: 400, message: expect.stringMatching(/intValue: integer out of range, got 1e\+300/) }]);
  });
});

describe('hand-written requests', () => {
  const span = {
    trace_id: '5b8efff798038103d269b633813fc60c', // snake_case is valid proto3 JSON too
    spanId: 'EEE19B7EC3C1B174', // hex ids are case-insensitive
    name: 'manual',
    kind: 'SPAN_KIND_SERVER',
    startTimeUnixNano: '1700000000000000001',
    endTimeUnixNano: '1700000000000000999',
    attributes: [
      { key: 'as.string', value: { intValue: '9007199254740993' } },
      { key: 'as.number', value: { intValue: 12 } },
      { key: 'nan', value: { doubleValue: 'NaN' } },
      { key: 'bytes', value: { bytesValue: 'AQID' } },
      { key: 'kv', value: { kvlistValue: { values: [{ key: 'inner', value: { boolValue: false } }] } } },
      { key: 'empty', value: {} },
    ],
    status: { code: 'STATUS_CODE_OK' },
  };

  it('accepts OTLP/JSON with string int64s, enum names, snake_case keys and every AnyValue kind', async () => {
    const text = JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [span] }] }] });
    const res = await post(receiver.tracesUrl, text, { 'content-type': 'application/json' });
    expect([res.status, await res.text(), res.headers.get('content-type')]).toEqual([200, '{}', 'application/json']);
    const [got] = receiver.spans;
    expect(got).toMatchObject({
      traceId: '5b8efff798038103d269b633813fc60c',
      spanId: 'eee19b7ec3c1b174',
      kind: 2,
      startTimeUnixNano: 1700000000000000001n,
      endTimeUnixNano: 1700000000000000999n,
      status: { code: 1 },
      scope: '',
      resource: {},
    });
    expect(got!.attributes).toEqual({
      'as.string': 9007199254740993n,
      'as.number': 12,
      nan: NaN,
      bytes: 'AQID',
      kv: { inner: false },
      empty: null,
    });
    expect(got!.attributeTypes).toEqual({
      'as.string': 'int',
      'as.number': 'int',
      nan: 'double',
      bytes: 'bytes',
      kv: 'kvlist',
      empty: 'empty',
    });
  });

  it('keeps int64 JSON numbers (not strings) exact beyond 2^53', async () => {
    const text =
      `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"${span.trace_id}","spanId":"0102030405060708",` +
      `"endTimeUnixNano":1700000000000000999,"attributes":[{"key":"n","value":{"intValue":9007199254740993}}]}]}]}]}`;
    expect((await post(receiver.tracesUrl, text, { 'content-type': 'application/json' })).status).toBe(200);
    expect(receiver.spans[0]).toMatchObject({ endTimeUnixNano: 1700000000000000999n, attributes: { n: 9007199254740993n } });
  });

  it('answers protobuf with an empty ExportTraceServiceResponse', async () => {
    const message = ExportTraceServiceRequest.fromObject({});
    const res = await post(receiver.tracesUrl, ExportTraceServiceRequest.encode(message).finish(), {
      'content-type': 'application/x-protobuf',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-protobuf');
    const body = new Uint8Array(await res.arrayBuffer());
    expect(ExportTraceServiceResponse.toObject(ExportTraceServiceResponse.decode(body))).toEqual({});
    expect(receiver.requests.protobuf).toBe(1);
  });
});

describe('bad requests', () => {
  it.each([
    ['garbage JSON', '{not json', 'application/json', undefined, 400, /body is not JSON/],
    ['JSON of the wrong shape', '{"resourceSpans":5}', 'application/json', undefined, 400, /resourceSpans: expected an array/],
    ['a non-hex id', '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}', 'application/json', undefined, 400, /traceId: expected a hex id/],
    [
      'an id of the wrong length',
      '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102","spanId":"0102030405060708"}]}]}]}',
      'application/json',
      undefined,
      400,
      /traceId: expected 16 bytes, got 2/,
    ],
    ['truncated protobuf', Buffer.from([0x0a, 0xff, 0xff]), 'application/x-protobuf', undefined, 400, /did not decode/],
    ['non-protobuf bytes', Buffer.from('hello, garbage'), 'application/x-protobuf', undefined, 400, /did not decode/],
    ['a body that is not gzip', '{}', 'application/json', 'gzip', 400, /gzip body did not inflate/],
    ['an unknown content type', '{}', 'text/plain', undefined, 415, /unsupported Content-Type/],
    ['an unknown content encoding', '{}', 'application/json', 'br', 415, /unsupported Content-Encoding/],
  ] as const)('answers %s with %i and keeps serving', async (_what, body, contentType, contentEncoding, status, message) => {
    const headers: Record<string, string> = { 'content-type': contentType };
    if (contentEncoding) headers['content-encoding'] = contentEncoding;
    const res = await post(receiver.tracesUrl, body, headers);
    expect(res.status).toBe(status);
    expect(await res.text()).toMatch(message);
    expect(receiver.requests).toEqual({ json: 0, protobuf: 0, gzip: 0, rejected: 1 });
    expect(receiver.rejections[0]!.message).toMatch(message);

    // Still serving: a real export right after goes through.
    await exportAttributes('protobuf', receiver.tracesUrl, { after: true });
    expect(receiver.spans.map((s) => s.attributes)).toEqual([{ after: true }]);
  });

  it('accepts a gzipped hand-written JSON body', async () => {
    const res = await post(receiver.tracesUrl, zlib.gzipSync('{"resourceSpans":[]}'), {
      'content-type': 'application/json; charset=utf-8',
      'content-encoding': 'gzip',
    });
    expect(res.status).toBe(200);
    expect(receiver.requests).toMatchObject({ json: 1, gzip: 1 });
  });

  it('answers other paths with 404 and other methods with 405', async () => {
    expect((await fetch(`${receiver.url}/v1/metrics`, { method: 'POST', body: '{}' })).status).toBe(404);
    expect((await fetch(receiver.tracesUrl)).status).toBe(405);
  });
});

describe('waitFor', () => {
  it('resolves at once when the predicate already holds', async () => {
    await exportAttributes('json', receiver.tracesUrl, { n: 1 });
    await expect(receiver.waitFor((all) => all.length === 1, { timeoutMs: 50 })).resolves.toHaveLength(1);
  });

  it('resolves when a later request satisfies it', async () => {
    const waiting = receiver.waitFor((all) => all.some((s) => s.attributes.late === true), { timeoutMs: 2000 });
    await exportAttributes('protobuf', receiver.tracesUrl, { late: true });
    await expect(waiting).resolves.toHaveLength(1);
  });

  it('times out with the received spans and the last predicate error', async () => {
    await exportAttributes('protobuf', receiver.tracesUrl, { 'cost.db.queries': 7 });
    const waiting = receiver.waitFor(
      (all) => {
        expect(all[0]!.attributes['cost.db.queries']).toBe(8);
        return true;
      },
      { timeoutMs: 100 },
    );
    await expect(waiting).rejects.toThrow(
      /timed out after 100 ms[\s\S]*SERVER "attrs"[\s\S]*cost\.db\.queries=7\(int\)[\s\S]*last predicate error: expected 7 to be 8/,
    );
  });

  it('rejects pending waits when the receiver closes', async () => {
    const other = await startOtlpReceiver();
    const waiting = other.waitFor(() => false, { timeoutMs: 5000 });
    await other.close();
    await expect(waiting).rejects.toThrow(/receiver closed while waiting/);
  });
});
