/**
 * OTLP/gRPC intake, with the collector as a child process: TraceService/Export over HTTP/2 as
 * SDKs and otelcol send it, plain and gzip (grpc-encoding), is judged like OTLP/HTTP and forwarded
 * once; refusals carry the status codes the OTLP specification gives them (UNAVAILABLE retryable,
 * with a RetryInfo of Retry-After's seconds, INVALID_ARGUMENT, UNAUTHENTICATED, RESOURCE_EXHAUSTED
 * past the body limit), each counted.
 */
import http2 from 'node:http2';
import net from 'node:net';
import zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { ExportTraceServiceResponse } from '../../test/support/otlp-schema';
import { COLLECTOR_BUDGETS, startCollectorProcess, type CollectorProcess } from './support/collector-process';
import { startDownstream, type DownstreamServer } from './support/downstream-server';
import { decodeStatusDetails, RETRY_INFO_TYPE_URL } from './support/grpc-status-details';
import { Kind, ORDERS_ROOT_COST, ordersTrace, postOtlp, toOtlpProtobuf, type SyntheticSpan } from './support/synthetic-trace';
import { requestOfSpan, validSpanBytes } from './support/wire-bytes';

const EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
const SPANS_PER_TRACE = ordersTrace().spans.length;
/** Spans that may be roots (SERVER, CONSUMER): held whole until their trace is judged; the others are forwarded as they arrive. */
const mayBeRoot = (span: SyntheticSpan): boolean => span.kind === Kind.SERVER || span.kind === Kind.CONSUMER;
const ROOTS_PER_TRACE = ordersTrace().spans.filter(mayBeRoot).length;
const CHILDREN_PER_TRACE = SPANS_PER_TRACE - ROOTS_PER_TRACE;
const childIdsOf = (trace: ReturnType<typeof ordersTrace>): string[] =>
  trace.spans
    .filter((span) => !mayBeRoot(span))
    .map((span) => span.spanId)
    .sort();
/** The names of the spans carrying a cost.* or budget.* attribute. */
const editedSpans = (spans: DownstreamServer['spans']): string[] =>
  spans.filter((span) => Object.keys(span.attributes).some((key) => key.startsWith('cost.') || key.startsWith('budget.'))).map((span) => span.name);
const started: { collectors: CollectorProcess[]; servers: DownstreamServer[]; clients: grpc.Client[] } = { collectors: [], servers: [], clients: [] };

afterEach(async () => {
  for (const client of started.clients.splice(0)) client.close();
  await Promise.all(started.collectors.splice(0).map((collector) => collector.stop('SIGKILL')));
  await Promise.all(started.servers.splice(0).map((server) => server.close()));
});

async function collectorWith(flags: Record<string, string>, env: Record<string, string> = {}): Promise<CollectorProcess> {
  const collector = await startCollectorProcess(Object.entries({ '--budgets': COLLECTOR_BUDGETS, '--grace-period': '100ms', ...flags }).flat(), env);
  started.collectors.push(collector);
  return collector;
}

interface GrpcAnswer {
  readonly status: number;
  readonly message: string;
  /** The ExportTraceServiceResponse, decoded with the official schema (undefined when refused). */
  readonly response: Record<string, unknown> | undefined;
  /** The grpc-status-details-bin trailer of a refusal (grpc-js client only), when there was one. */
  readonly statusDetails?: Buffer;
}

/**
 * One Export call by hand over HTTP/2: the gRPC framing is built here, so a gzip message is
 * certainly sent compressed (flag byte 1, grpc-encoding: gzip).
 */
function exportByHand(address: string, message: Uint8Array, gzip: boolean): Promise<GrpcAnswer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${address}`);
    session.on('error', reject);
    const payload = gzip ? zlib.gzipSync(message) : Buffer.from(message);
    const prefix = Buffer.alloc(5);
    prefix[0] = gzip ? 1 : 0;
    prefix.writeUInt32BE(payload.length, 1);
    const request = session.request({
      ':method': 'POST',
      ':path': EXPORT_PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...(gzip ? { 'grpc-encoding': 'gzip' } : {}),
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    let statusMessage = '';
    const readStatus = (headers: http2.IncomingHttpHeaders) => {
      if (headers['grpc-status'] !== undefined) status = String(headers['grpc-status']);
      if (headers['grpc-message'] !== undefined) statusMessage = decodeURIComponent(String(headers['grpc-message']));
    };
    request.on('response', readStatus);
    request.on('trailers', readStatus);
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('error', reject);
    request.on('end', () => {
      session.close();
      const body = Buffer.concat(chunks);
      const response = body.length >= 5 ? ExportTraceServiceResponse.toObject(ExportTraceServiceResponse.decode(body.subarray(5))) : undefined;
      resolve({ status: Number(status), message: statusMessage, response });
    });
    request.end(Buffer.concat([prefix, payload]));
  });
}

/** One Export call with grpc-js's client, as SDK exporters make it. */
function exportWithGrpcJs(address: string, message: Uint8Array, metadata = new grpc.Metadata()): Promise<GrpcAnswer> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  started.clients.push(client);
  const raw = (bytes: Buffer) => bytes;
  return new Promise((resolve) => {
    client.makeUnaryRequest(EXPORT_PATH, raw, raw, Buffer.from(message), metadata, (error: grpc.ServiceError | null, answer?: Buffer) => {
      if (error) {
        const statusDetails = error.metadata?.get('grpc-status-details-bin')[0];
        resolve({ status: error.code, message: error.details, response: undefined, ...(Buffer.isBuffer(statusDetails) ? { statusDetails } : {}) });
      } else resolve({ status: grpc.status.OK, message: '', response: ExportTraceServiceResponse.toObject(ExportTraceServiceResponse.decode(answer!)) });
    });
  });
}

describe.each([
  { how: 'plain', send: (address: string, message: Uint8Array) => exportWithGrpcJs(address, message) },
  { how: 'gzip', send: (address: string, message: Uint8Array) => exportByHand(address, message, true) },
])('a trace exported over gRPC ($how)', ({ send }) => {
  it('is judged against the budgets and forwarded to the downstream exactly once', async () => {
    const target = await startDownstream();
    started.servers.push(target);
    // A grace period well past the batch linger (50 ms): the roots' batch never joins the children's.
    const collector = await collectorWith({ '--otlp-endpoint': target.url, '--grace-period': '500ms' });
    expect(collector.grpcAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    const trace = ordersTrace();

    const answer = await send(collector.grpcAddress!, toOtlpProtobuf(trace));
    expect(answer).toMatchObject({ status: grpc.status.OK, response: {} });

    await expect.poll(() => target.spans.length, { timeout: 10_000 }).toBe(SPANS_PER_TRACE);
    expect(target.spans.map((span) => span.spanId).sort()).toEqual(trace.spans.map((span) => span.spanId).sort());
    const order = target.spans.find((span) => span.spanId === trace.rootId)!;
    expect(Object.fromEntries(Object.entries(order.attributes).filter(([key]) => key.startsWith('cost.')))).toEqual(ORDERS_ROOT_COST);
    expect(order.attributes).toMatchObject({
      'budget.rule': 'GET /orders/:id',
      'budget.breached': true,
      'budget.violations': ['db.queries 6>5', 'db.time_ms 9.8>8', 'db.repeated_count 3>2'],
    });
    expect(target.spans.find((span) => span.spanId === trace.inventoryRootId)!.attributes).toMatchObject({
      'budget.rule': 'GET /stock/:sku',
      'budget.breached': false,
    });
    await expect.poll(() => collector.metric('request_budget_collector_forwarded_spans_total{downstream="otlp"}'), { timeout: 5000 }).toBe(SPANS_PER_TRACE);
    expect(await collector.metric('request_budget_collector_received_spans_total{encoding="grpc"}')).toBe(SPANS_PER_TRACE);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="grpc",code="OK"}')).toBe(1);
    // Nothing came in twice (the ids above), in two requests: the children as they arrived, then
    // the roots, judged a grace period later; only the roots were written on.
    expect(target.attempts).toHaveLength(2);
    expect(
      target.spans
        .slice(0, CHILDREN_PER_TRACE)
        .map((span) => span.spanId)
        .sort(),
    ).toEqual(childIdsOf(trace));
    expect(editedSpans(target.spans).sort()).toEqual(['GET /orders/{order_id}', 'GET /stock/{sku}']);
  });
});

describe('refusals over gRPC', () => {
  it('a message that does not decode gets INVALID_ARGUMENT; spans with bad ids a partial success', async () => {
    const collector = await collectorWith({});
    const invalid = await exportWithGrpcJs(collector.grpcAddress!, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    expect(invalid.status).toBe(grpc.status.INVALID_ARGUMENT);
    expect(invalid.message).toMatch(/^protobuf ExportTraceServiceRequest did not decode: /);

    const good = validSpanBytes();
    const badId = validSpanBytes({ spanId: Buffer.alloc(3, 1) });
    const partial = await exportWithGrpcJs(collector.grpcAddress!, Buffer.concat([requestOfSpan(good.bytes), requestOfSpan(badId.bytes)]));
    expect(partial.status).toBe(grpc.status.OK);
    expect(partial.response).toMatchObject({ partialSuccess: { rejectedSpans: expect.anything() } });
    expect(Number((partial.response!.partialSuccess as { rejectedSpans: unknown }).rejectedSpans)).toBe(1);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="grpc",code="INVALID_ARGUMENT"}')).toBe(1);
    expect(await collector.metric('request_budget_collector_received_spans_total{encoding="grpc"}')).toBe(1);
    expect(await collector.metric('request_budget_collector_dropped_spans_total{reason="invalid",downstream="none"}')).toBe(1);
  });

  it('a full collector answers UNAVAILABLE (retryable) and counts the spans it refused', async () => {
    // No downstream: the first trace's children are dropped as they arrive; its roots are held (long
    // grace period) and, with a whole second trace, would pass the limit.
    const collector = await collectorWith({ '--grace-period': '30s', '--max-queue-spans': String(SPANS_PER_TRACE + 1) });
    expect((await exportWithGrpcJs(collector.grpcAddress!, toOtlpProtobuf(ordersTrace()))).status).toBe(grpc.status.OK);
    const refused = await exportByHand(collector.grpcAddress!, toOtlpProtobuf(ordersTrace()), false);
    expect(refused).toEqual({
      status: grpc.status.UNAVAILABLE,
      message: `queue full (${ROOTS_PER_TRACE} spans held, ${SPANS_PER_TRACE} more would pass the limit of ${SPANS_PER_TRACE + 1}); retry later`,
      response: undefined,
    });
    expect(await collector.metric('request_budget_collector_dropped_spans_total{reason="queue_full",downstream="none"}')).toBe(SPANS_PER_TRACE);
    expect(await collector.metric('request_budget_collector_dropped_spans_total{reason="no_downstream",downstream="none"}')).toBe(CHILDREN_PER_TRACE);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="grpc",code="UNAVAILABLE"}')).toBe(1);
    expect(await collector.metric('request_budget_collector_spans_in_memory')).toBe(ROOTS_PER_TRACE);
    expect(await collector.metric('request_budget_collector_span_records_in_memory')).toBe(CHILDREN_PER_TRACE);
  });

  it('UNAVAILABLE carries a google.rpc.RetryInfo of the seconds OTLP/HTTP gives in Retry-After; INVALID_ARGUMENT none', async () => {
    // The downstream asks for 120 s: the collector tells senders to come back in 60 s, its most.
    const target = await startDownstream(undefined, () => ({ status: 503, headers: { 'retry-after': '120' } }));
    started.servers.push(target);
    const collector = await collectorWith({ '--otlp-endpoint': target.url, '--max-queue-spans': String(SPANS_PER_TRACE + 1) });
    expect((await exportWithGrpcJs(collector.grpcAddress!, toOtlpProtobuf(ordersTrace()))).status).toBe(grpc.status.OK);
    // The children's batch and the roots' (a grace period later), each refused once; the next try is 120 s away.
    await expect.poll(() => collector.metric('request_budget_collector_forward_retries_total{downstream="otlp"}'), { timeout: 10_000 }).toBe(2);
    expect(await collector.metric('request_budget_collector_queue_spans{downstream="otlp"}')).toBe(SPANS_PER_TRACE);

    const overHttp = await postOtlp(collector.tracesUrl, toOtlpProtobuf(ordersTrace()), 'application/x-protobuf');
    expect([overHttp.status, overHttp.headers.get('retry-after')]).toEqual([503, '60']);
    const refused = await exportWithGrpcJs(collector.grpcAddress!, toOtlpProtobuf(ordersTrace()));
    const message = `queue full (${SPANS_PER_TRACE} spans held, ${SPANS_PER_TRACE} more would pass the limit of ${SPANS_PER_TRACE + 1}); retry later`;
    expect([refused.status, refused.message]).toEqual([grpc.status.UNAVAILABLE, message]);
    expect(decodeStatusDetails(refused.statusDetails!)).toEqual({
      code: grpc.status.UNAVAILABLE,
      message,
      details: [{ typeUrl: RETRY_INFO_TYPE_URL, retryDelay: { seconds: 60, nanos: 0 } }],
    });

    // Not to be retried: no RetryInfo.
    const invalid = await exportWithGrpcJs(collector.grpcAddress!, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    expect(invalid.status).toBe(grpc.status.INVALID_ARGUMENT);
    expect(invalid.statusDetails).toBeUndefined();
  });

  it('without the bearer token gets UNAUTHENTICATED; with it, OK', async () => {
    const collector = await collectorWith({}, { REQUEST_BUDGET_COLLECTOR_AUTH_TOKEN: 's3cret' });
    const message = toOtlpProtobuf(ordersTrace());
    expect((await exportWithGrpcJs(collector.grpcAddress!, message)).status).toBe(grpc.status.UNAUTHENTICATED);
    const wrong = new grpc.Metadata();
    wrong.set('authorization', 'Bearer nope');
    expect((await exportWithGrpcJs(collector.grpcAddress!, message, wrong)).status).toBe(grpc.status.UNAUTHENTICATED);
    const right = new grpc.Metadata();
    right.set('authorization', 'Bearer s3cret');
    expect((await exportWithGrpcJs(collector.grpcAddress!, message, right)).status).toBe(grpc.status.OK);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="grpc",code="UNAUTHENTICATED"}')).toBe(2);
  });

  it('a message larger than --max-body-size, before or after inflating, gets RESOURCE_EXHAUSTED', async () => {
    const collector = await collectorWith({ '--max-body-size': '64KiB' });
    // 100 KiB of zeros in one attribute: 100 KiB plain, a few hundred bytes gzipped.
    const big = requestOfSpan(validSpanBytes({ attributes: [{ key: 'blob', value: { stringValue: '0'.repeat(100 * 1024) } }] }).bytes);
    expect(zlib.gzipSync(big).length).toBeLessThan(64 * 1024);
    expect((await exportByHand(collector.grpcAddress!, big, false)).status).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect((await exportByHand(collector.grpcAddress!, big, true)).status).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(await collector.metric('request_budget_collector_received_spans_total{encoding="grpc"}')).toBe(0);
  });
});

describe('--grpc-listen', () => {
  it('off (here from the environment) starts no gRPC receiver', async () => {
    const collector = await collectorWith({}, { REQUEST_BUDGET_COLLECTOR_GRPC_LISTEN: 'off' });
    expect(collector.grpcAddress).toBeUndefined();
    expect(collector.stdoutLines.join('\n')).not.toContain('grpc://');
  });

  it('stops taking connections at SIGTERM while what is held is still delivered', async () => {
    const target = await startDownstream(undefined, () => ({ status: 200, delayMs: 1500 }));
    started.servers.push(target);
    // The roots are held (long grace period) until SIGTERM judges them; the children go at once.
    const collector = await collectorWith({ '--otlp-endpoint': target.url, '--shutdown-timeout': '5s', '--grace-period': '30s' });
    const [host, port] = collector.grpcAddress!.split(':');
    const trace = ordersTrace();
    expect((await exportByHand(collector.grpcAddress!, toOtlpProtobuf(trace), false)).status).toBe(grpc.status.OK);
    await expect.poll(() => target.attempts.length, { timeout: 5000 }).toBe(1);
    expect(await collector.metric('request_budget_collector_spans_in_memory')).toBe(ROOTS_PER_TRACE);
    const stopped = collector.stop('SIGTERM', 10_000);
    await collector.waitForLine(/SIGTERM: delivering what is held/, 5000, 'stderr');
    // The delivery is still under way (the downstream answers after 1.5 s), the process alive; the
    // line is written just before shutdown begins, so the refusal is polled for.
    const connect = () =>
      new Promise<string>((resolve) => {
        const socket = net.connect(Number(port), host);
        socket.once('connect', () => {
          socket.destroy();
          resolve('connected');
        });
        socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      });
    await expect.poll(connect, { timeout: 1000, interval: 50 }).toBe('ECONNREFUSED');
    expect(target.spans).toHaveLength(0);
    expect(await stopped).toBe(0);
    // The children's request, in flight at SIGTERM, and the roots', judged at SIGTERM.
    expect(target.attempts).toHaveLength(2);
    expect(target.spans.map((span) => span.spanId).sort()).toEqual(trace.spans.map((span) => span.spanId).sort());
    const order = target.spans.find((span) => span.spanId === trace.rootId)!;
    expect(Object.fromEntries(Object.entries(order.attributes).filter(([key]) => key.startsWith('cost.')))).toEqual(ORDERS_ROOT_COST);
    expect(editedSpans(target.spans).sort()).toEqual(['GET /orders/{order_id}', 'GET /stock/{sku}']);
  });
});
