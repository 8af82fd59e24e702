/**
 * Memory against a real collector process with its downstream down: spans held are bounded in
 * bytes (--memory-limit; from 80 % of it, 503 + Retry-After before the body is read), what was
 * accepted is all delivered once the downstream is back, a body that would expand to millions of
 * entries is refused at once, and spans held do not keep their request bodies alive — the
 * process's resident memory (VmRSS, as the kernel counts it) stays bounded. Bodies being received
 * count with the spans held, over OTLP/HTTP and OTLP/gRPC alike, until they end however they end.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../test/support/free-port';
import { otlpRoot } from '../src/otlp/otlp-schema';
import { CHUNK_SLOTS, RECORD_SLOT_BYTES } from '../src/processor/record-store';
import type { CollectorProcess } from './support/collector-process';
import { useCollectorsAndDownstreams } from './support/collectors-and-downstreams';
import { decodeStatusDetails, RETRY_INFO_TYPE_URL } from './support/grpc-status-details';
import { Kind, newSpanId, newTraceId, postOtlp, toOtlpProtobuf } from './support/synthetic-trace';
import { emptyAttributesRequest, lengthDelimited, requestOfSpan, validSpanBytes } from './support/wire-bytes';

const MiB = 1024 * 1024;
const RpcStatus = otlpRoot.lookupType('google.rpc.Status');
const { collectorFor, downstreamOn } = useCollectorsAndDownstreams();
/**
 * What the trace window's record store keeps once a span was forwarded, empty or not: its first
 * chunk of CHUNK_SLOTS slots (record-store.ts), counted in the memory held.
 */
const RECORD_STORE_BYTES = CHUNK_SLOTS * RECORD_SLOT_BYTES;

/** Resident memory of a process, as the kernel counts it (MB). */
function rssMb(pid: number): number {
  const line = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(line![1]) / 1024;
}

const post = (collector: CollectorProcess, body: Uint8Array, headers: Record<string, string> = {}) =>
  postOtlp(collector.tracesUrl, body, 'application/x-protobuf', headers);

/** A request of `size` bytes: one valid span, then an unknown field of padding (dropped at decoding). */
function paddedRequest(size: number): Buffer {
  const span = requestOfSpan(validSpanBytes().bytes);
  // The padding field's tag and length, as for a field of about `size` bytes.
  const framing = lengthDelimited(100, Buffer.alloc(size)).length - size;
  const body = Buffer.concat([span, lengthDelimited(100, Buffer.alloc(size - span.length - framing, 0x61))]);
  expect(body.length).toBe(size);
  return body;
}

interface Answer {
  readonly status: number;
  readonly retryAfter: string | undefined;
  readonly message: string;
}

/**
 * A POST of `body` whose first `sendFirst` bytes are sent now; `finish()` sends the rest and
 * resolves with the answer, `abort()` destroys the connection.
 */
function sendInPart(collector: CollectorProcess, body: Buffer, sendFirst: number) {
  const request = http.request(collector.tracesUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length, ...(body[0] === 0x1f ? { 'content-encoding': 'gzip' } : {}) },
  });
  const answer = new Promise<Answer>((resolve, reject) => {
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const { message } = RpcStatus.toObject(RpcStatus.decode(Buffer.concat(chunks))) as { message?: string };
        resolve({ status: response.statusCode!, retryAfter: response.headers['retry-after'], message: message ?? '' });
      });
    });
    request.on('error', reject);
  });
  // Awaited by finish(); not when the sender is abandoned or the test fails first.
  answer.catch(() => undefined);
  request.write(body.subarray(0, sendFirst));
  return {
    finish: () => {
      request.end(body.subarray(sendFirst));
      return answer;
    },
    abort: () => request.destroy(),
  };
}

/** One Export call with grpc-js's client: the status code, its message and the grpc-status-details-bin trailer. */
function exportOverGrpc(address: string, message: Uint8Array): Promise<{ code: number; details: string; statusDetails: Buffer | undefined }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const raw = (bytes: Buffer) => bytes;
  return new Promise((resolve) => {
    client.makeUnaryRequest('/opentelemetry.proto.collector.trace.v1.TraceService/Export', raw, raw, Buffer.from(message), (error) => {
      client.close();
      if (error === null) resolve({ code: grpc.status.OK, details: '', statusDetails: undefined });
      else resolve({ code: error.code, details: error.details, statusDetails: error.metadata.get('grpc-status-details-bin')[0] as Buffer | undefined });
    });
  });
}

/** A trace of `count` spans with 20 attributes each, about 2 KB of protobuf a span. */
function bulkyTrace(count: number) {
  const traceId = newTraceId();
  const rootId = newSpanId();
  const attributes = Object.fromEntries(Array.from({ length: 20 }, (_, index) => [`app.attribute.${index}`, `${'v'.repeat(60)}-${index}`]));
  const spans = Array.from({ length: count }, (_, index) => ({
    service: 'orders-py',
    name: index === 0 ? 'GET /orders/{order_id}' : 'work',
    kind: index === 0 ? Kind.SERVER : Kind.INTERNAL,
    spanId: index === 0 ? rootId : newSpanId(),
    ...(index === 0 ? {} : { parentSpanId: rootId }),
    startUs: index,
    endUs: index + 10,
    attributes,
  }));
  return { traceId, baseNs: 1_000_000_000n, spans };
}

describe('the memory limit, downstream down', () => {
  it('refuses with 503 + Retry-After from the soft limit, never holds more than the limit, and delivers all it accepted once the downstream is back', async () => {
    const port = await freePort();
    const limit = 8 * MiB;
    // A grace period longer than the sending: the roots of the traces accepted last are still held when refused.
    const collector = await collectorFor(`http://127.0.0.1:${port}`, { '--memory-limit': '8MiB', '--grace-period': '5s' });
    expect(await collector.metric('request_budget_collector_memory_limit_bytes')).toBe(limit);
    // Nothing held yet: the record store takes its first chunk with the first span forwarded.
    expect(await collector.metric('request_budget_collector_memory_held_bytes')).toBe(0);

    const accepted: string[] = [];
    let refused: Response | undefined;
    for (let request = 0; request < 60 && refused === undefined; request += 1) {
      const trace = bulkyTrace(100);
      const response = await post(collector, toOtlpProtobuf(trace));
      if (response.status === 200) accepted.push(...trace.spans.map((span) => span.spanId));
      else refused = response;
      const held = await collector.metric('request_budget_collector_memory_held_bytes');
      expect(held).toBeLessThanOrEqual(limit);
    }
    expect(refused?.status).toBe(503);
    expect(refused!.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    const status = RpcStatus.toObject(RpcStatus.decode(new Uint8Array(await refused!.arrayBuffer()))) as { code: number; message: string };
    expect(status.code).toBe(14); // UNAVAILABLE
    expect(status.message).toMatch(
      new RegExp(
        `^memory limit: spans held are estimated at \\d+ bytes, past the soft limit of ${Math.floor(limit * 0.8)} \\(80 % of --memory-limit ${limit}\\); retry later$`,
      ),
    );
    // Refused at the soft limit: what was held then was at least 80 % of the limit.
    const held = await collector.metric('request_budget_collector_memory_held_bytes');
    expect(held).toBeGreaterThanOrEqual(limit * 0.8);
    expect(held).toBeLessThanOrEqual(limit);
    expect(accepted.length).toBeGreaterThanOrEqual(500);
    // Only the roots wait whole in the trace window, each with the records of its 99 children; the
    // children were forwarded as they came and wait in the queue of the downstream that is down,
    // with the roots whose grace period is over. One scrape: one moment.
    const figures = await collector.metrics();
    const rootsHeld = figures.get('request_budget_collector_spans_in_memory')!;
    const queued = figures.get('request_budget_collector_queue_spans{downstream="otlp"}')!;
    expect(rootsHeld).toBeGreaterThan(0);
    expect(figures.get('request_budget_collector_traces_in_memory')).toBe(rootsHeld);
    expect(figures.get('request_budget_collector_span_records_in_memory')).toBe(99 * rootsHeld);
    expect(rootsHeld + queued).toBe(accepted.length);
    expect(queued).toBeGreaterThanOrEqual((accepted.length / 100) * 99);
    expect(await collector.metric('request_budget_collector_memory_refused_requests_total')).toBe(1);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="protobuf",code="503"}')).toBe(1);
    const ready = await fetch(`${collector.url}/readyz`);
    expect([ready.status, await ready.text()]).toEqual([
      503,
      expect.stringMatching(/^not ready: memory limit \(spans held estimated at \d+ bytes, soft limit 6710886\)\n$/),
    ]);
    await collector.waitForLine(/memory limit: refused 1 request\(s\) with 503 \+ Retry-After before reading them/, 5000, 'stderr');
    expect(rssMb(collector.child.pid!)).toBeLessThan(400);

    const downstream = await downstreamOn(port);
    await expect.poll(() => downstream.spans.length, { timeout: 20_000 }).toBe(accepted.length);
    const ids = downstream.spans.map((span) => span.spanId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual(accepted.sort());
    // Everything delivered: nothing held but the record store's first chunk (the others let go).
    await expect.poll(() => collector.metric('request_budget_collector_memory_held_bytes'), { timeout: 5000 }).toBe(RECORD_STORE_BYTES);
    expect(await collector.metric('request_budget_collector_span_records_in_memory')).toBe(0);
    expect((await fetch(`${collector.url}/readyz`)).status).toBe(200);
    expect((await post(collector, toOtlpProtobuf(bulkyTrace(10)))).status).toBe(200);
  });

  it('refuses 12 bodies of 10 MiB of empty attributes at once with 400, answering health checks meanwhile', async () => {
    const collector = await collectorFor(`http://127.0.0.1:${await freePort()}`);
    const body = emptyAttributesRequest(5 * MiB - 64);
    expect(body.length).toBeLessThanOrEqual(10 * MiB);
    // Each scrape resets the event loop delay histogram: the next one sees the delays since.
    await collector.metrics();
    const health: number[] = [];
    let sending = true;
    const probe = (async () => {
      while (sending) {
        health.push((await fetch(`${collector.url}/healthz`)).status);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const startedAt = performance.now();
    const answers = await Promise.all(Array.from({ length: 12 }, () => post(collector, body)));
    const elapsed = performance.now() - startedAt;
    sending = false;
    await probe;
    const stalledMs = (await collector.metric('request_budget_collector_nodejs_eventloop_lag_max_seconds')) * 1000;
    expect(answers.map((answer) => answer.status)).toEqual(Array(12).fill(400));
    const status = RpcStatus.toObject(RpcStatus.decode(new Uint8Array(await answers[0]!.arrayBuffer()))) as { message: string };
    expect(status.message).toBe(
      'request has more entries (spans, attributes, values, events, links) than the limit of 1000000 entries per request; send smaller batches',
    );
    // Decoding them whole stalled the event loop 8.8 s and took 2.26 GB.
    expect(elapsed).toBeLessThan(10_000);
    expect(stalledMs).toBeLessThan(1000);
    expect(new Set(health)).toEqual(new Set([200]));
    expect(rssMb(collector.child.pid!)).toBeLessThan(600);
    expect(await collector.metric('request_budget_collector_spans_in_memory')).toBe(0);
    expect(collector.child.exitCode).toBeNull();
  });

  it('holds 100 small spans from 10 KB gzip bodies of 9 MiB inflated without holding the bodies', async () => {
    const collector = await collectorFor(`http://127.0.0.1:${await freePort()}`);
    const baseline = rssMb(collector.child.pid!);
    // Gzip members concatenated inflate to their contents concatenated: one protobuf message.
    const unknownField = zlib.gzipSync(lengthDelimited(100, Buffer.alloc(9 * MiB, 0x61)));
    for (let request = 0; request < 100; request += 1) {
      const { bytes } = validSpanBytes({ attributes: [{ key: 'blob', value: { bytesValue: Buffer.from('small') } }] });
      const body = Buffer.concat([zlib.gzipSync(requestOfSpan(bytes)), unknownField]);
      expect(body.length).toBeLessThan(12 * 1024);
      const response = await post(collector, body, { 'content-encoding': 'gzip' });
      expect(response.status).toBe(200);
      await response.arrayBuffer();
    }
    await expect.poll(() => collector.metric('request_budget_collector_queue_spans{downstream="otlp"}'), { timeout: 5000 }).toBe(100);
    // Held: 100 spans of about 1,100 bytes estimated each (the span, its message and the buffer of
    // its request, its resource and scope: each came alone), not 100 bodies of 9 MiB.
    const held = await collector.metric('request_budget_collector_memory_held_bytes');
    expect(held).toBeGreaterThan(100 * 500);
    expect(held).toBeLessThan(100 * 1536);
    // 71 → 1,122 MB when each span kept its body; a few inflated bodies may await collection.
    expect(rssMb(collector.child.pid!) - baseline).toBeLessThan(250);
  });
});

describe('the memory limit, with requests in flight', () => {
  it('counts the bodies being received with the spans held: refuses more past the soft limit, and a body or its inflated form that would pass the limit, and gives the bytes back however a request ends', async () => {
    const downstream = await downstreamOn();
    // Senders hold their bodies open across the whole test: no idle cut-off meanwhile.
    const collector = await collectorFor(downstream.url, { '--memory-limit': '4MiB', '--idle-timeout': '120s', '--request-timeout': '120s' });
    const limit = 4 * MiB;
    const inFlight = () => collector.metric('request_budget_collector_memory_in_flight_bytes');

    // Three bodies of 1.25 MiB, all but their last byte sent: 3.75 MiB in flight, past the soft
    // limit (3.2 MiB) and under the limit. Nothing is held yet.
    const slow = Array.from({ length: 3 }, () => {
      const body = paddedRequest(1.25 * MiB);
      return sendInPart(collector, body, body.length - 1);
    });
    const eachInFlight = 1.25 * MiB - 1;
    await expect.poll(inFlight, { timeout: 10_000 }).toBe(3 * eachInFlight);

    // Any further request is refused before it is read, over OTLP/HTTP and OTLP/gRPC alike.
    const refusal = `memory limit: spans held are estimated at 0 bytes and requests in flight at ${3 * eachInFlight}, past the soft limit of ${Math.floor(limit * 0.8)} (80 % of --memory-limit ${limit}); retry later`;
    const refused = await post(collector, toOtlpProtobuf(bulkyTrace(1)));
    expect([refused.status, refused.headers.get('retry-after')]).toEqual([503, '1']);
    expect(RpcStatus.toObject(RpcStatus.decode(new Uint8Array(await refused.arrayBuffer())))).toEqual({ code: 14, message: refusal });
    const refusedOverGrpc = await exportOverGrpc(collector.grpcAddress!, toOtlpProtobuf(bulkyTrace(1)));
    expect([refusedOverGrpc.code, refusedOverGrpc.details]).toEqual([grpc.status.UNAVAILABLE, refusal]);
    expect(decodeStatusDetails(refusedOverGrpc.statusDetails!).details).toEqual([{ typeUrl: RETRY_INFO_TYPE_URL, retryDelay: { seconds: 1, nanos: 0 } }]);
    expect(await collector.metric('request_budget_collector_memory_refused_requests_total')).toBe(2);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="protobuf",code="503"}')).toBe(1);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="grpc",code="UNAVAILABLE"}')).toBe(1);

    // Two of them end: their one span each is taken in, their bytes given back.
    expect((await Promise.all(slow.slice(0, 2).map((sender) => sender.finish()))).map((answer) => answer.status)).toEqual([200, 200]);
    await expect.poll(inFlight, { timeout: 10_000 }).toBe(eachInFlight);

    // Below the soft limit a request comes in; once its body, or its inflated body, would take what
    // is held and in flight past the limit itself, it is refused with 503 + Retry-After.
    const overrun =
      /^memory limit: spans held \(estimated at \d+ bytes\) and requests in flight \(\d+ bytes, \d+ more for this one\) would pass --memory-limit 4194304; retry later$/;
    const large = paddedRequest(3 * MiB);
    const gzipBomb = zlib.gzipSync(paddedRequest(3 * MiB));
    expect(gzipBomb.length).toBeLessThan(64 * 1024);
    for (const body of [large, gzipBomb]) {
      const answer = await sendInPart(collector, body, 0).finish();
      expect(answer).toEqual({ status: 503, retryAfter: '1', message: expect.stringMatching(overrun) });
      expect(await inFlight()).toBe(eachInFlight);
    }
    expect(await collector.metric('request_budget_collector_memory_refused_requests_total')).toBe(4);

    // A sender that goes away mid-body gives its bytes back.
    const abandoned = sendInPart(collector, paddedRequest(1.5 * MiB), MiB);
    await expect.poll(inFlight, { timeout: 10_000 }).toBe(eachInFlight + MiB);
    abandoned.abort();
    await expect.poll(inFlight, { timeout: 10_000 }).toBe(eachInFlight);

    // The last one ends: nothing in flight, and further requests come in again.
    expect((await slow[2]!.finish()).status).toBe(200);
    await expect.poll(inFlight, { timeout: 10_000 }).toBe(0);
    expect((await post(collector, toOtlpProtobuf(bulkyTrace(1)))).status).toBe(200);
    expect((await exportOverGrpc(collector.grpcAddress!, toOtlpProtobuf(bulkyTrace(1)))).code).toBe(grpc.status.OK);
    expect(await inFlight()).toBe(0);
    await expect.poll(() => downstream.spans.length, { timeout: 10_000 }).toBe(5);
    expect(await collector.metric('request_budget_collector_memory_refused_requests_total')).toBe(4);
  });
});
