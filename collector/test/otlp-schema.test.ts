/**
 * The collector's own description of the OTLP trace schema (src/otlp/otlp-schema.ts) against the
 * official opentelemetry-proto files (the test-only copy in @elastic/mockotlpserver): every type,
 * field number, field type, label and enum value; then payloads made by the real OpenTelemetry
 * JS exporters (protobuf and JSON, gzip or not), decoded by the collector and by the official
 * schema, must agree span for span, and what the collector re-encodes must decode to the same.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeTraceRequest, type OtlpEncoding } from '../src/receiver/otlp-decode';
import { encodeExportResponse, encodeStatus, encodeTraceRequest } from '../src/exporter/otlp-encode';
import { spanMessage } from '../src/otlp/span-message';
import { keyValuesToPlain } from '../src/otlp/otlp-model';
import { otlpRoot } from '../src/otlp/otlp-schema';
import { decodeJsonRequest, decodeProtobufRequest } from '../../test/support/otlp-decode';
import { otlpRoot as officialRoot, ExportTraceServiceResponse as OfficialResponse } from '../../test/support/otlp-schema';
import type { ReceivedSpan } from '../../test/support/received-span';
import { contractOnly } from './support/contract-only';

/** Parts of the collector's schema that the official copy (opentelemetry-proto 1.4.0) predates or leaves out. */
const NEWER_OR_EXTRA = new Set([
  'opentelemetry.proto.common.v1.EntityRef',
  'opentelemetry.proto.resource.v1.Resource.entityRefs',
  'google.protobuf.Any',
  'google.rpc.Status',
]);

function describeType(type: protobuf.Type): Record<string, unknown> {
  return Object.fromEntries(
    type.fieldsArray.map((field) => {
      field.resolve();
      return [field.name, { id: field.id, type: field.resolvedType?.fullName ?? field.type, repeated: field.repeated, oneof: field.partOf?.name }];
    }),
  );
}

function collect(namespace: protobuf.NamespaceBase, out = new Map<string, protobuf.ReflectionObject>()) {
  for (const nested of namespace.nestedArray) {
    if (nested instanceof protobuf.Type || nested instanceof protobuf.Enum) out.set(nested.fullName.slice(1), nested);
    if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) collect(nested, out);
  }
  return out;
}

describe('schema', () => {
  const official = collect(officialRoot);
  const ours = collect(otlpRoot);

  it('has every official message and enum of the trace subset, with the same fields, numbers, types and values', () => {
    expect(official.size).toBeGreaterThan(15);
    for (const [name, officialType] of official) {
      const mine = ours.get(name);
      expect(mine, name).toBeDefined();
      if (officialType instanceof protobuf.Enum) expect((mine as protobuf.Enum).values, name).toEqual(officialType.values);
      else {
        const mineFields = describeType(mine as protobuf.Type);
        for (const extra of NEWER_OR_EXTRA) if (extra.startsWith(`${name}.`)) delete mineFields[extra.slice(name.length + 1)];
        expect(mineFields, name).toEqual(describeType(officialType as protobuf.Type));
      }
    }
  });

  it('adds nothing else', () => {
    expect([...ours.keys()].filter((name) => !official.has(name)).sort()).toEqual([...NEWER_OR_EXTRA].filter((name) => !name.includes('.entityRefs')).sort());
  });
});

// ---------------------------------------------------------------------------------------------

interface Captured {
  body: Buffer;
  contentType: string;
  contentEncoding: string;
}

let server: http.Server;
let url: string;
const captured: Captured[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      captured.push({ body: Buffer.concat(chunks), contentType: req.headers['content-type'] ?? '', contentEncoding: req.headers['content-encoding'] ?? '' });
      const json = (req.headers['content-type'] ?? '').includes('json');
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' }).end(json ? '{}' : Buffer.alloc(0));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** Records a small request with every kind of attribute value, exports it, returns the raw body. */
async function exportWithRealSdk(encoding: OtlpEncoding, gzip: boolean): Promise<Captured> {
  captured.length = 0;
  const config = { url, compression: gzip ? CompressionAlgorithm.GZIP : CompressionAlgorithm.NONE };
  const exporter = encoding === 'protobuf' ? new ProtoTraceExporter(config) : new JsonTraceExporter(config);
  // Both spans in one export request, as a batch processor sends them.
  const memory = new InMemorySpanExporter();
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'schema-test', 'process.pid': 1234, 'host.arch': 'amd64' }),
    spanProcessors: [new SimpleSpanProcessor({ exporter: memory })],
  });
  const tracer = provider.getTracer('schema-scope', '9.9.9');
  const server = tracer.startSpan('GET /users/:id', {
    kind: SpanKind.SERVER,
    attributes: {
      'http.route': '/users/:id',
      'cost.db.queries': 3,
      'cost.db.time_ms': 1.5,
      'cost.heap.delta_bytes': -4096,
      'big.int': 2 ** 40,
      'budget.violations': ['db.queries 3>1', 'db.rows 9>2'],
      'budget.breached': true,
      numbers: [1, 2.5],
      flags: [true, false],
    },
  });
  server.addEvent('budget.breach', { metric: 'db.queries', value: 3, limit: 1, severity: 'critical', ratio: 0.25 });
  server.addLink({ context: { traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8), traceFlags: 1 }, attributes: { why: 'link' } });
  const query = tracer.startSpan(
    'SELECT',
    { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT 1' } },
    trace.setSpan(context.active(), server),
  );
  query.setStatus({ code: SpanStatusCode.ERROR, message: 'relation does not exist' });
  query.end();
  server.end();
  await provider.forceFlush();
  const result = await new Promise<{ code: number; error?: Error }>((resolve) => exporter.export(memory.getFinishedSpans(), resolve));
  expect(result.error).toBeUndefined();
  await exporter.shutdown();
  await provider.shutdown();
  expect(captured).toHaveLength(1);
  return captured[0]!;
}

const withoutEncoding = (spans: ReceivedSpan[]) => spans.map(({ encoding: _encoding, ...rest }) => rest);

describe.each([
  { encoding: 'protobuf', gzip: false },
  { encoding: 'protobuf', gzip: true },
  { encoding: 'json', gzip: false },
  { encoding: 'json', gzip: true },
] as const)('what the real exporter sends, $encoding (gzip: $gzip)', ({ encoding, gzip }) => {
  it('decodes as the official schema decodes it, and re-encodes without loss', async () => {
    const request = await exportWithRealSdk(encoding, gzip);
    expect(request.contentEncoding).toBe(gzip ? 'gzip' : '');
    const body = gzip ? zlib.gunzipSync(request.body) : request.body;
    const officialSpans = encoding === 'protobuf' ? decodeProtobufRequest(body) : decodeJsonRequest(body.toString('utf8'));
    const { spans, rejected } = decodeTraceRequest(body, encoding);
    expect(rejected).toBe(0);
    expect(spans).toHaveLength(2);
    expect(officialSpans).toHaveLength(2);
    for (const [index, official] of officialSpans.entries()) {
      const mine = spans[index]!;
      expect({
        traceId: mine.traceId,
        spanId: mine.spanId,
        parentSpanId: mine.parentSpanId,
        kind: mine.kind,
        startTimeUnixNano: mine.startNs,
        endTimeUnixNano: mine.endNs,
        attributes: mine.attributes,
        resource: mine.origin.resource.attributes,
        scope: mine.origin.scopeName,
        events: spanMessage(mine).events.map((event) => ({ name: event.name, attributes: keyValuesToPlain(event.attributes) })),
      }).toEqual({
        traceId: official.traceId,
        spanId: official.spanId,
        parentSpanId: official.parentSpanId,
        kind: official.kind,
        startTimeUnixNano: official.startTimeUnixNano,
        endTimeUnixNano: official.endTimeUnixNano,
        // Only the names core reads are read from a span; the rest are forwarded as they came (below).
        attributes: contractOnly(official.attributes),
        resource: official.resource,
        scope: official.scope,
        events: official.events.map((event) => ({ name: event.name, attributes: event.attributes })),
      });
    }
    // Everything the official schema reads — values, OTLP types, events, links' absence of loss,
    // status — survives the collector's re-encoding.
    expect(withoutEncoding(decodeProtobufRequest(encodeTraceRequest(spans)))).toEqual(withoutEncoding(officialSpans));
    const officialMessage = officialRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
    const reencoded = officialMessage.toObject(officialMessage.decode(encodeTraceRequest(spans)), { longs: String, bytes: String });
    const original = officialMessage.toObject(
      encoding === 'protobuf'
        ? officialMessage.decode(body)
        : officialMessage.decode(
            officialMessage.encode(officialMessage.fromObject(jsonToProtoObject(JSON.parse(body.toString('utf8'))) as Record<string, unknown>)).finish(),
          ),
      { longs: String, bytes: String },
    );
    expect(reencoded).toEqual(original);
  });
});

/** OTLP/JSON hex ids → base64, which protobufjs' fromObject reads for bytes (links included). */
function jsonToProtoObject(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map((item) => jsonToProtoObject(item));
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonToProtoObject(v, k)]));
  if (typeof value === 'string' && ['traceId', 'spanId', 'parentSpanId'].includes(key)) return Buffer.from(value, 'hex').toString('base64');
  return value;
}

describe('answers', () => {
  it('encodes the ExportTraceServiceResponse and its partial success as the official schema reads them', () => {
    expect(OfficialResponse.toObject(OfficialResponse.decode(encodeExportResponse('protobuf')))).toEqual({});
    const partial = OfficialResponse.toObject(OfficialResponse.decode(encodeExportResponse('protobuf', { rejectedSpans: 2, errorMessage: 'bad ids' })), {
      longs: Number,
    });
    expect(partial).toEqual({ partialSuccess: { rejectedSpans: 2, errorMessage: 'bad ids' } });
    expect(JSON.parse(Buffer.from(encodeExportResponse('json', { rejectedSpans: 2, errorMessage: 'bad ids' })).toString())).toEqual({
      partialSuccess: { rejectedSpans: '2', errorMessage: 'bad ids' },
    });
  });

  it('writes error bodies as google.rpc.Status', () => {
    const status = otlpRoot.lookupType('google.rpc.Status');
    expect(status.toObject(status.decode(encodeStatus('protobuf', 400, 'no good')))).toEqual({ code: 3, message: 'no good' });
    expect(JSON.parse(Buffer.from(encodeStatus('json', 503, 'full')).toString())).toEqual({ code: 14, message: 'full' });
  });
});

describe('OTLP/JSON as other senders write it', () => {
  it('reads snake_case names, enum names, int64 as numbers, and hex ids', () => {
    const body = JSON.stringify({
      resource_spans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { string_value: 'py' } }] },
          scope_spans: [
            {
              spans: [
                {
                  trace_id: '0af7651916cd43dd8448eb211c80319c',
                  span_id: 'b7ad6b7169203331',
                  name: 'x',
                  kind: 'SPAN_KIND_SERVER',
                  start_time_unix_nano: 1_700_000_000_000_000_000n.toString(),
                  end_time_unix_nano: 1700000000001000000,
                  attributes: [
                    { key: 'cost.db.queries', value: { int_value: 7 } },
                    { key: 'cost.heap.delta_bytes', value: { intValue: '9007199254740993' } },
                  ],
                  status: { code: 'STATUS_CODE_ERROR', message: 'boom' },
                },
              ],
            },
          ],
        },
      ],
    });
    const { spans } = decodeTraceRequest(Buffer.from(body), 'json');
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      parentSpanId: '',
      kind: 2,
      attributes: { 'cost.db.queries': 7, 'cost.heap.delta_bytes': 9007199254740993n },
    });
    expect(spans[0]!.endNs - spans[0]!.startNs).toBe(1_000_000n);
    expect(spanMessage(spans[0]!).status).toMatchObject({ code: 2, message: 'boom' });
  });

  it('ignores unknown fields, those named like members of every JavaScript object included', () => {
    const span = {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      name: 'x',
      kind: 1,
      startTimeUnixNano: '1',
      endTimeUnixNano: '2',
      constructor: 1,
      futureField: 'y',
    };
    const body = JSON.stringify({ resourceSpans: [{ toString: [], hasOwnProperty: {}, scopeSpans: [{ valueOf: 0, spans: [span] }] }] });
    const { spans, rejected } = decodeTraceRequest(Buffer.from(body), 'json');
    expect([spans.map((decoded) => decoded.spanId), rejected]).toEqual([['b7ad6b7169203331'], 0]);
  });

  it('refuses spans with impossible ids one by one, and says why', () => {
    const span = (traceId: string, spanId: string) => ({ traceId, spanId, name: 'x', kind: 1, startTimeUnixNano: '1', endTimeUnixNano: '2' });
    const body = JSON.stringify({
      resourceSpans: [
        {
          scopeSpans: [
            {
              spans: [
                span('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331'),
                span('00'.repeat(16), 'b7ad6b7169203331'),
                span('0af7651916cd43dd8448eb211c80319c', 'abcd'),
              ],
            },
          ],
        },
      ],
    });
    const decoded = decodeTraceRequest(Buffer.from(body), 'json');
    expect(decoded.spans).toHaveLength(1);
    expect(decoded.rejected).toBe(2);
    expect(decoded.rejectionReason).toBe('span "x": invalid trace id (16 bytes; 16 non-zero bytes expected)');
  });
});
