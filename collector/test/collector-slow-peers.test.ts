/**
 * Peers that connect and then stall, trickle or never read, against the running collector (a
 * child process, real sockets): they are cut off at the headers, request and idle timeouts, their
 * connections destroyed (the collector's open file handles, read from /proc, go back to where they
 * were), and they cannot keep a legitimate sender out by holding every receive slot. Also: sender
 * text made to backtrack a glob matcher is judged at once, and the collector keeps answering.
 */
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import zlib from 'node:zlib';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startOtlpReceiver, type OtlpReceiver } from '../../test/support/otlp-receiver';
import { startCollectorProcess, type CollectorProcess } from './support/collector-process';
import { Kind, newSpanId, newTraceId, ordersTrace, postOtlp, toOtlpJson, toOtlpProtobuf, type SyntheticTrace } from './support/synthetic-trace';

const started: CollectorProcess[] = [];
const sockets: net.Socket[] = [];
let receiver: OtlpReceiver | undefined;
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
});
afterAll(async () => {
  for (const collector of started) await collector.stop();
  await receiver?.close();
});

async function collectorWith(flags: Record<string, string>): Promise<CollectorProcess> {
  const collector = await startCollectorProcess(Object.entries(flags).flat());
  started.push(collector);
  return collector;
}

/** Open file handles of the collector process, as the kernel lists them. */
const openFiles = (collector: CollectorProcess): number => readdirSync(`/proc/${collector.child.pid}/fd`).length;

/** The open file handles once start-up is over (the same count twice, 200 ms apart). */
async function settledOpenFiles(collector: CollectorProcess): Promise<number> {
  for (let previous = -1; ; await sleep(200)) {
    const now = openFiles(collector);
    if (now === previous) return now;
    previous = now;
  }
}

interface Peer {
  readonly socket: net.Socket;
  /** Bytes the collector sent it. */
  readonly received: Buffer[];
  /** performance.now() when the collector closed it. */
  readonly closedAt: Promise<number>;
}

/** A raw connection that sends `first` (when given) and then whatever the test writes. */
async function connect(collector: CollectorProcess, first?: string, { read = true } = {}): Promise<Peer> {
  const { port } = new URL(collector.url);
  const socket = net.connect(Number(port), '127.0.0.1');
  sockets.push(socket);
  const received: Buffer[] = [];
  const closedAt = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
  // Resets from the collector are what some of these tests expect.
  socket.on('error', () => {});
  if (read) socket.on('data', (chunk: Buffer) => received.push(chunk));
  else socket.pause();
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  if (first !== undefined) socket.write(first);
  return { socket, received, closedAt };
}

const postHead = (length: number) => `POST /v1/traces HTTP/1.1\r\nhost: collector\r\ncontent-type: application/x-protobuf\r\ncontent-length: ${length}\r\n\r\n`;

describe('stalled bodies', () => {
  it('32 connections that send one body byte and stop hold no slot for long: a legitimate POST gets 200 while they are connected, and they are destroyed at the idle timeout', async () => {
    // Idle timeout 6 s: a body is stalled (its slot can be taken) after 1.5 s without a byte.
    const collector = await collectorWith({
      '--idle-timeout': '6s',
      '--headers-timeout': '1s',
      '--request-timeout': '20s',
      '--keep-alive-timeout': '500ms',
      '--grace-period': '100ms',
    });
    const baseline = await settledOpenFiles(collector);
    const attackers = await Promise.all(Array.from({ length: 32 }, () => connect(collector, `${postHead(1000)}x`)));
    const sentAt = performance.now();
    await expect.poll(() => openFiles(collector), { timeout: 5000, interval: 20 }).toBe(baseline + 32);

    // Within the first 1.5 s the 32 bodies are still "arriving": every slot is held.
    await sleep(100);
    const early = await postOtlp(collector.tracesUrl, toOtlpProtobuf(ordersTrace()), 'application/x-protobuf');
    await early.arrayBuffer();
    expect([early.status, early.headers.get('retry-after'), performance.now() - sentAt < 1500]).toEqual([503, '1', true]);

    // Once stalled, a new sender takes the slot of one of them.
    await sleep(Math.max(0, sentAt + 1700 - performance.now()));
    const started = performance.now();
    const legit = await postOtlp(collector.tracesUrl, toOtlpProtobuf(ordersTrace()), 'application/x-protobuf');
    expect([legit.status, Buffer.from(await legit.arrayBuffer()).toString()]).toEqual([200, '']);
    expect(performance.now() - started).toBeLessThan(1000);
    const second = await postOtlp(collector.tracesUrl, toOtlpProtobuf(ordersTrace()), 'application/x-protobuf');
    expect([second.status, Buffer.from(await second.arrayBuffer()).toString()]).toEqual([200, '']);
    // One stalled connection was cut to make room (the second POST had the first one's slot); 31 are still connected.
    const stillOpen = () => attackers.filter((peer) => !peer.socket.destroyed);
    await expect.poll(() => stillOpen().length, { timeout: 500, interval: 10 }).toBe(31);
    const open = stillOpen();

    // The rest are destroyed at the idle timeout (6 s after their last byte), never answered.
    const closedAt = await Promise.all(open.map((peer) => peer.closedAt));
    for (const at of closedAt) {
      expect(at - sentAt).toBeGreaterThan(5900);
      expect(at - sentAt).toBeLessThan(6000 + 2000);
    }
    expect(attackers.map((peer) => Buffer.concat(peer.received).length)).toEqual(Array.from({ length: 32 }, () => 0));
    // The legitimate sender's keep-alive connections too, at the keep-alive timeout.
    await expect.poll(() => openFiles(collector), { timeout: 3000, interval: 50 }).toBe(baseline);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="protobuf",code="200"}')).toBe(2);
    expect(await collector.metric('request_budget_collector_received_requests_total{encoding="protobuf",code="408"}')).toBe(1);
  });
});

describe('idle and slow connections', () => {
  it('200 idle sockets that never send nor read are destroyed at the idle timeout: open file handles return to the baseline', async () => {
    const collector = await collectorWith({ '--idle-timeout': '1500ms', '--headers-timeout': '5s', '--request-timeout': '10s' });
    const baseline = await settledOpenFiles(collector);
    const opened = performance.now();
    const idle = await Promise.all(Array.from({ length: 200 }, () => connect(collector, undefined, { read: false })));
    await expect.poll(() => openFiles(collector), { timeout: 5000, interval: 20 }).toBe(baseline + 200);
    let back = 0;
    await expect
      .poll(
        () => {
          back = performance.now();
          return openFiles(collector);
        },
        { timeout: 1500 + 2000, interval: 50 },
      )
      .toBe(baseline);
    expect(back - opened).toBeGreaterThan(1400);
    expect(idle).toHaveLength(200);
    expect((await fetch(`${collector.url}/healthz`)).status).toBe(200);
  });

  it('cuts slow headers at the headers timeout and a trickling body at the request timeout, with 408, and destroys them', async () => {
    const collector = await collectorWith({ '--idle-timeout': '3s', '--headers-timeout': '1s', '--request-timeout': '2500ms' });
    const baseline = await settledOpenFiles(collector);
    // Slowloris: headers a byte every 200 ms, never finished.
    const slowHeaders = await connect(collector, 'POST /v1/traces HTTP/1.1\r\nhost: collector\r\nx-slow: ');
    const headersFrom = performance.now();
    // A body a byte every 200 ms: never idle, never stalled, just too slow.
    const slowBody = await connect(collector, postHead(1000));
    const bodyFrom = performance.now();
    const drip = setInterval(() => {
      if (!slowHeaders.socket.destroyed) slowHeaders.socket.write('a');
      if (!slowBody.socket.destroyed) slowBody.socket.write('b');
    }, 200);
    try {
      const headersClosed = await slowHeaders.closedAt;
      expect(headersClosed - headersFrom).toBeGreaterThan(950);
      expect(headersClosed - headersFrom).toBeLessThan(1000 + 1000);
      expect(Buffer.concat(slowHeaders.received).toString()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
      const bodyClosed = await slowBody.closedAt;
      expect(bodyClosed - bodyFrom).toBeGreaterThan(2450);
      expect(bodyClosed - bodyFrom).toBeLessThan(2500 + 1000);
    } finally {
      clearInterval(drip);
    }
    await expect.poll(() => openFiles(collector), { timeout: 2000, interval: 50 }).toBe(baseline);
    expect((await fetch(`${collector.url}/healthz`)).status).toBe(200);
  });
});

describe('sender text made to backtrack a glob matcher', () => {
  it('judges a 100 KB adversarial route, job name and statement in well under a second, answering /healthz meanwhile', async () => {
    receiver = await startOtlpReceiver();
    const dir = mkdtempSync(path.join(tmpdir(), 'collector-glob-'));
    const budgets = path.join(dir, 'budgets.yaml');
    writeFileSync(
      budgets,
      [
        'version: 1',
        'routes:',
        '  - match: GET /**/x/**/x/**/x/**/z',
        '    queries: 1',
        '  - match: /**',
        '    queries: 100',
        `    allowRepeated: ["${'*a'.repeat(30)}*b"]`,
        'jobs:',
        `  - match: "${'**a'.repeat(20)}.b"`,
        '    queries: 1',
        '  - match: "**"',
        '    queries: 100',
        '',
      ].join('\n'),
    );
    const collector = await collectorWith({ '--budgets': budgets, '--otlp-endpoint': receiver.url, '--grace-period': '100ms' });
    const route = `/${Array.from({ length: 50_000 }, () => 'x').join('/')}/y`;
    const statement = 'a'.repeat(100_000);
    const jobName = 'a'.repeat(100_000);
    const traceId = newTraceId();
    const requestRoot = newSpanId();
    const jobRoot = newSpanId();
    const db = (parent: string, startUs: number) => ({
      service: 'orders-py',
      name: 'SELECT',
      kind: Kind.CLIENT,
      spanId: newSpanId(),
      parentSpanId: parent,
      startUs,
      endUs: startUs + 100,
      attributes: { 'db.system.name': 'postgresql', 'db.query.text': statement },
    });
    const trace: SyntheticTrace = {
      traceId,
      baseNs: BigInt(Date.now()) * 1_000_000n,
      spans: [
        {
          service: 'orders-py',
          name: 'GET',
          kind: Kind.SERVER,
          spanId: requestRoot,
          startUs: 0,
          endUs: 5000,
          attributes: { 'http.request.method': 'GET', 'http.route': route },
        },
        db(requestRoot, 100),
        db(requestRoot, 300),
        {
          service: 'orders-py',
          name: 'job',
          kind: Kind.CONSUMER,
          spanId: jobRoot,
          startUs: 6000,
          endUs: 9000,
          attributes: { 'request_budget.job.name': jobName },
        },
        db(jobRoot, 6100),
      ],
    };
    const body = zlib.gzipSync(JSON.stringify(toOtlpJson(trace)));
    // A few KB of gzip for 300 KB of adversarial text.
    expect(body.length).toBeLessThan(5000);

    let slowestHealthz = 0;
    let probing = true;
    const probe = (async () => {
      while (probing) {
        const from = performance.now();
        expect((await fetch(`${collector.url}/healthz`, { signal: AbortSignal.timeout(5000) })).status).toBe(200);
        slowestHealthz = Math.max(slowestHealthz, performance.now() - from);
        await sleep(20);
      }
    })();
    const from = performance.now();
    const response = await postOtlp(collector.tracesUrl, body, 'application/json', { 'content-encoding': 'gzip' });
    expect(response.status).toBe(200);
    const spans = await receiver.waitFor((all) => all.filter((span) => span.traceId === traceId).length === 5, { timeoutMs: 5000 });
    const judgedIn = performance.now() - from;
    probing = false;
    await probe;

    const rootOf = (id: string) => spans.find((span) => span.spanId === id)!;
    expect([rootOf(requestRoot).attributes['budget.rule'], rootOf(requestRoot).attributes['cost.db.queries']]).toEqual(['/**', 2]);
    expect([rootOf(jobRoot).attributes['budget.rule'], rootOf(jobRoot).attributes['cost.db.queries']]).toEqual(['**', 1]);
    // Grace period (100 ms) included.
    expect(judgedIn).toBeLessThan(2000);
    expect(slowestHealthz).toBeLessThan(1000);
    expect(await collector.metric('request_budget_collector_process_duration_seconds_sum')).toBeLessThan(0.5);
    expect(await collector.metric('request_budget_collector_judged_roots_total')).toBe(2);
  });
});
