/**
 * Memory against a real collector process with its downstream down: spans held are bounded in
 * bytes (--memory-limit; from 80 % of it, 503 + Retry-After before the body is read), what was
 * accepted is all delivered once the downstream is back, a body that would expand to millions of
 * entries is refused at once, and spans held do not keep their request bodies alive — the
 * process's resident memory (VmRSS, as the kernel counts it) stays bounded.
 */
import { readFileSync } from 'node:fs';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../test/support/free-port';
import { otlpRoot } from '../src/otlp/otlp-schema';
import type { CollectorProcess } from './support/collector-process';
import { useCollectorsAndDownstreams } from './support/collectors-and-downstreams';
import { Kind, newSpanId, newTraceId, postOtlp, toOtlpProtobuf } from './support/synthetic-trace';
import { emptyAttributesRequest, lengthDelimited, requestOfSpan, validSpanBytes } from './support/wire-bytes';

const MiB = 1024 * 1024;
const RpcStatus = otlpRoot.lookupType('google.rpc.Status');
const { collectorFor, downstreamOn } = useCollectorsAndDownstreams();

/** Resident memory of a process, as the kernel counts it (MB). */
function rssMb(pid: number): number {
  const line = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(line![1]) / 1024;
}

const post = (collector: CollectorProcess, body: Uint8Array, headers: Record<string, string> = {}) =>
  postOtlp(collector.tracesUrl, body, 'application/x-protobuf', headers);

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
    const collector = await collectorFor(`http://127.0.0.1:${port}`, { '--memory-limit': '8MiB' });
    expect(await collector.metric('request_budget_collector_memory_limit_bytes')).toBe(limit);

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
    await expect.poll(() => collector.metric('request_budget_collector_memory_held_bytes'), { timeout: 5000 }).toBe(0);
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
    // Held: 100 spans of about 1.5 KB estimated each, not 100 bodies of 9 MiB.
    const held = await collector.metric('request_budget_collector_memory_held_bytes');
    expect(held).toBeGreaterThan(100 * 640);
    expect(held).toBeLessThan(100 * 4096);
    // 71 → 1,122 MB when each span kept its body; a few inflated bodies may await collection.
    expect(rssMb(collector.child.pid!) - baseline).toBeLessThan(250);
  });
});
