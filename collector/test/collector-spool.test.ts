/**
 * The durable spool (--spool-dir), with real collector processes: a downstream taking 2 s per
 * answer, SIGTERM with a 500 ms --shutdown-timeout, and every span acknowledged to the sender is
 * delivered exactly once across this run and the next — what the slow downstream acknowledged, and
 * the rest from the spool — whose files are gone afterwards. Damaged spool files are moved aside,
 * files of a downstream no longer configured are left, and without a spool the shutdown line says
 * how many spans were dropped.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeProtobufRequest } from '../../test/support/otlp-decode';
import { encodeEmptyResponse } from '../../test/support/otlp-schema';
import type { CollectorProcess } from './support/collector-process';
import { useCollectorsAndDownstreams } from './support/collectors-and-downstreams';
import { Kind, newSpanId, newTraceId, postOtlp, toOtlpProtobuf, type SyntheticTrace } from './support/synthetic-trace';

const { collectorFor } = useCollectorsAndDownstreams();
const SPANS_PER_TRACE = 20;
const TRACES = 100; // 2,000 spans

const dirs: string[] = [];
const servers: http.Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function spoolDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'request-budget-spool-'));
  dirs.push(dir);
  return dir;
}

/** A server span with 19 children: 20 spans. */
function wideTrace(): SyntheticTrace {
  const rootId = newSpanId();
  const children = Array.from({ length: SPANS_PER_TRACE - 1 }, (_, index) => ({
    service: 'orders-py',
    name: `step ${index}`,
    kind: Kind.INTERNAL,
    spanId: newSpanId(),
    parentSpanId: rootId,
    startUs: 100 + index * 10,
    endUs: 105 + index * 10,
  }));
  return {
    traceId: newTraceId(),
    baseNs: BigInt(Date.now() - 1000) * 1_000_000n,
    spans: [{ service: 'orders-py', name: 'GET /orders', kind: Kind.SERVER, spanId: rootId, startUs: 0, endUs: 1000 }, ...children],
  };
}

/** Sends the traces; returns the ids of the spans the collector acknowledged (every one: 200 is asserted). */
async function sendAcknowledged(collector: CollectorProcess, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let index = 0; index < count; index += 1) {
    const trace = wideTrace();
    expect((await postOtlp(collector.tracesUrl, toOtlpProtobuf(trace), 'application/x-protobuf')).status).toBe(200);
    ids.push(...trace.spans.map((span) => span.spanId));
  }
  return ids;
}

/**
 * An OTLP downstream answering after `delayMs`; it keeps the span ids of a request only when its
 * answer reached an open connection — what the collector can have seen acknowledged.
 */
async function acknowledgingDownstream(delayMs: number, port = 0) {
  const acknowledged: string[] = [];
  let requests = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      requests += 1;
      setTimeout(() => {
        if (res.destroyed || req.socket.destroyed) return; // the collector gave up on it: not acknowledged
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(encodeEmptyResponse(), () => {
          acknowledged.push(...decodeProtobufRequest(Buffer.concat(chunks)).map((span) => span.spanId));
        });
      }, delayMs);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    acknowledged,
    get requests() {
      return requests;
    },
    close: async () => {
      servers.splice(servers.indexOf(server), 1);
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The spool's batch files: their header (as JSON) and the span ids of their body, decoded with the official schema. */
function spoolFiles(dir: string): { name: string; header: Record<string, unknown>; spanIds: string[]; bodyBytes: number }[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.batch'))
    .map((name) => {
      const content = readFileSync(path.join(dir, name));
      const headerEnd = content.indexOf(0x0a, content.indexOf(0x0a) + 1);
      const header = JSON.parse(content.toString('utf8', content.indexOf(0x0a) + 1, headerEnd)) as Record<string, unknown>;
      const body = content.subarray(headerEnd + 1);
      return { name, header, spanIds: decodeProtobufRequest(body).map((span) => span.spanId), bodyBytes: body.length };
    });
}

function expectExactlyOnce(delivered: string[], sent: string[]): void {
  expect(new Set(delivered).size).toBe(delivered.length);
  expect([...delivered].sort()).toEqual([...sent].sort());
}

describe('--spool-dir', () => {
  it('keeps what a slow downstream has not acknowledged at the shutdown deadline, and delivers it exactly once at the next start', async () => {
    const dir = spoolDir();
    const slow = await acknowledgingDownstream(2000);
    const first = await collectorFor(slow.url, { '--spool-dir': dir, '--shutdown-timeout': '500ms', '--max-batch-spans': '100' });
    const sent = await sendAcknowledged(first, TRACES);
    expect(sent).toHaveLength(2000);
    await expect.poll(() => slow.requests, { timeout: 5000 }).toBe(4); // --forward-concurrency: 4 in flight, the rest queued

    const stopping = Date.now();
    expect(await first.stop('SIGTERM', 10_000)).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(3000);
    const files = spoolFiles(dir);
    const spooled = files.flatMap((file) => file.spanIds);
    expect(files.length).toBeGreaterThan(4);
    // Every span is either acknowledged by the slow downstream or in the spool, once.
    expectExactlyOnce([...slow.acknowledged, ...spooled], sent);
    expect(spooled.length).toBeGreaterThan(0);
    for (const file of files) expect(file.header).toMatchObject({ downstream: 'otlp', endpoint: `${slow.url}/v1/traces`, spans: file.spanIds.length });
    expect(readdirSync(dir).filter((name) => !name.endsWith('.batch'))).toEqual([]);
    expect(first.stderrLines).toContain(
      `request-budget-collector: ${spooled.length} span(s) spooled to ${dir} for downstream otlp (${slow.url}/v1/traces) in ${files.length} file(s); sent at the next start`,
    );
    expect(first.stderrLines.some((line) => line.includes('dropped'))).toBe(false);

    // The same endpoint, fast now. --max-queue-spans 1000: what does not fit waits for the start after.
    const acknowledgedBefore = [...slow.acknowledged];
    await slow.close();
    const fast = await acknowledgingDownstream(0, slow.port);
    const second = await collectorFor(fast.url, { '--spool-dir': dir, '--max-queue-spans': '1000' });
    const [, loaded, loadedFiles] = await second.waitForLine(
      new RegExp(`^request-budget-collector: (\\d+) span\\(s\\) loaded from the spool ${dir} for downstream otlp \\((\\d+) file\\(s\\)\\)`),
      5000,
      'stderr',
    );
    expect(Number(loaded)).toBeLessThanOrEqual(1000);
    expect(Number(loaded)).toBeGreaterThan(0);
    const [, left, leftFiles] = await second.waitForLine(
      new RegExp(
        `^request-budget-collector: (\\d+) span\\(s\\) in (\\d+) spool file\\(s\\) for otlp left in ${dir}: they do not fit in --max-queue-spans \\(1000\\)$`,
      ),
      5000,
      'stderr',
    );
    expect(Number(loaded) + Number(left)).toBe(spooled.length);
    expect(Number(loadedFiles) + Number(leftFiles)).toBe(files.length);
    await expect.poll(() => fast.acknowledged.length, { timeout: 10_000 }).toBe(Number(loaded));
    await expect.poll(() => spoolFiles(dir).length, { timeout: 5000 }).toBe(Number(leftFiles));
    expect(await second.metric('request_budget_collector_spool_loaded_spans_total{downstream="otlp"}')).toBe(Number(loaded));
    await expect.poll(() => second.metric('request_budget_collector_forwarded_spans_total{downstream="otlp"}'), { timeout: 5000 }).toBe(Number(loaded));
    // What was loaded counted as memory held until delivered.
    await expect.poll(() => second.metric('request_budget_collector_memory_held_bytes'), { timeout: 5000 }).toBe(0);
    expect(await second.stop('SIGTERM', 10_000)).toBe(0);

    const third = await collectorFor(fast.url, { '--spool-dir': dir });
    await third.waitForLine(
      new RegExp(`^request-budget-collector: ${left} span\\(s\\) loaded from the spool ${dir} for downstream otlp \\(${leftFiles} file\\(s\\)\\)`),
      5000,
      'stderr',
    );
    await expect.poll(() => fast.acknowledged.length, { timeout: 10_000 }).toBe(spooled.length);
    await expect.poll(() => readdirSync(dir), { timeout: 5000 }).toEqual([]);
    expect(await third.metric('request_budget_collector_spool_loaded_spans_total{downstream="otlp"}')).toBe(Number(left));
    expectExactlyOnce([...acknowledgedBefore, ...fast.acknowledged], sent);
  });

  it('loads at most half of --memory-limit from the spool, counted as memory held until delivered; the rest waits on disk', async () => {
    const dir = spoolDir();
    const slow = await acknowledgingDownstream(2000);
    const first = await collectorFor(slow.url, { '--spool-dir': dir, '--shutdown-timeout': '500ms', '--max-batch-spans': '100' });
    // 16,000 spans: more than half of the smallest --memory-limit (1 MiB) once spooled.
    await sendAcknowledged(first, 8 * TRACES);
    // Batches under way (4 at a time, 2 s each): how many were answered before the stop depends on
    // how long the sends took; most are still queued either way.
    await expect.poll(() => slow.requests, { timeout: 5000 }).toBeGreaterThanOrEqual(4);
    expect(await first.stop('SIGTERM', 10_000)).toBe(0);
    const files = spoolFiles(dir).sort((a, b) => (a.name < b.name ? -1 : 1));
    const total = files.reduce((sum, file) => sum + file.bodyBytes, 0);
    const limit = 1024 * 1024;
    const half = limit / 2;
    expect(total).toBeGreaterThan(half);

    // The downstream is down now: what is loaded stays queued (retried), held in memory.
    await slow.close();
    let expectedBytes = 0;
    let expectedFiles = 0;
    for (const file of files)
      if (expectedBytes + file.bodyBytes <= half) {
        expectedBytes += file.bodyBytes;
        expectedFiles += 1;
      }
    expect(expectedFiles).toBeGreaterThan(0);
    expect(expectedFiles).toBeLessThan(files.length);
    const second = await collectorFor(slow.url, { '--spool-dir': dir, '--memory-limit': '1MiB', '--shutdown-timeout': '500ms' });
    await second.waitForLine(new RegExp(`loaded from the spool ${dir} for downstream otlp \\(${expectedFiles} file\\(s\\)\\)`), 5000, 'stderr');
    await second.waitForLine(
      new RegExp(`spool file\\(s\\) for otlp left in ${dir}: they do not fit in half of --memory-limit \\(${half} bytes\\)$`),
      5000,
      'stderr',
    );
    expect(await second.metric('request_budget_collector_memory_held_bytes')).toBe(expectedBytes);
    expect(await second.stop('SIGTERM', 10_000)).toBe(0);
    // Nothing was delivered: every file is still there, those loaded included.
    expect(spoolFiles(dir)).toHaveLength(files.length);
  });

  it('moves a damaged spool file aside, leaves the files of a downstream no longer configured, deletes unfinished ones, and runs', async () => {
    const dir = spoolDir();
    writeFileSync(path.join(dir, '000000000000001-1-000001-otlp.batch'), 'not a spool file at all');
    // A whole header over a body cut short: what a failing disk could leave.
    const body = Buffer.from('0123456789');
    const header = (endpoint: string, bytes: number) =>
      `request-budget-spool 1\n${JSON.stringify({ downstream: 'otlp', endpoint, contentType: 'application/x-protobuf', spans: 20, bytes, sha256: createHash('sha256').update(body).digest('hex') })}\n`;
    const downstream = await acknowledgingDownstream(0);
    writeFileSync(
      path.join(dir, '000000000000002-1-000002-otlp.batch'),
      Buffer.concat([Buffer.from(header(`${downstream.url}/v1/traces`, 10)), body.subarray(0, 4)]),
    );
    writeFileSync(path.join(dir, '000000000000003-1-000003-otlp.batch'), Buffer.concat([Buffer.from(header('http://127.0.0.1:9/v1/traces', 10)), body]));
    writeFileSync(path.join(dir, '000000000000004-1-000004-otlp.batch.tmp'), 'half');

    const collector = await collectorFor(downstream.url, { '--spool-dir': dir });
    await collector.waitForLine(/no longer configured/, 5000, 'stderr'); // the last line of the loading
    expect(collector.stderrLines).toEqual(
      expect.arrayContaining([
        `request-budget-collector: spool file ${dir}/000000000000001-1-000001-otlp.batch is damaged (not a spool file: it does not start with the spool marker); moved to ${dir}/corrupt/000000000000001-1-000001-otlp.batch, not sent`,
        `request-budget-collector: spool file ${dir}/000000000000002-1-000002-otlp.batch is damaged (its body has 4 bytes, its header says 10); moved to ${dir}/corrupt/000000000000002-1-000002-otlp.batch, not sent`,
        `request-budget-collector: deleted unfinished spool file (the process stopped while writing it): ${dir}/000000000000004-1-000004-otlp.batch.tmp`,
        `request-budget-collector: 20 span(s) in 1 spool file(s) for otlp http://127.0.0.1:9/v1/traces left in ${dir}: that downstream is no longer configured`,
      ]),
    );
    expect(collector.stderrLines.filter((line) => line.includes('no longer configured'))).toHaveLength(1);
    expect(readdirSync(dir).sort()).toEqual(['000000000000003-1-000003-otlp.batch', 'corrupt']);
    expect(readdirSync(path.join(dir, 'corrupt')).sort()).toEqual(['000000000000001-1-000001-otlp.batch', '000000000000002-1-000002-otlp.batch']);
    expect(existsSync(path.join(dir, '000000000000004-1-000004-otlp.batch.tmp'))).toBe(false);

    const sent = await sendAcknowledged(collector, 1);
    await expect.poll(() => downstream.acknowledged.length, { timeout: 5000 }).toBe(SPANS_PER_TRACE);
    expectExactlyOnce(downstream.acknowledged, sent);
    expect(await collector.metric('request_budget_collector_spool_loaded_spans_total{downstream="otlp"}')).toBe(0);
    expect(await collector.metric('request_budget_collector_internal_errors_total')).toBe(0);
  });

  it('without a spool, the shutdown line says how many spans were dropped and that --spool-dir would keep them', async () => {
    const slow = await acknowledgingDownstream(2000);
    const collector = await collectorFor(slow.url, { '--shutdown-timeout': '500ms', '--max-batch-spans': '100' });
    await sendAcknowledged(collector, TRACES);
    await expect.poll(() => slow.requests, { timeout: 5000 }).toBe(4);
    expect(await collector.stop('SIGTERM', 10_000)).toBe(0);
    expect(collector.stderrLines).toContain(
      `request-budget-collector: otlp: shutdown deadline reached with ${2000 - slow.acknowledged.length} span(s) not delivered to ${slow.url}/v1/traces; dropped (--spool-dir would keep them on disk and send them at the next start)`,
    );
  });
});
