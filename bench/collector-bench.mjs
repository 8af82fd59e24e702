/**
 * `npm run bench:collector`: throughput, CPU per span, memory and ingest latency of
 * request-budget-collector (collector/dist/cli.js) on loopback.
 *
 * - The collector runs as a child process pinned to core 0 (`taskset -c 0`, when taskset exists
 *   and there are ≥ 2 cores), with the demo's budget file and one OTLP downstream: a sink in a
 *   second child process (pinned, with this process — the load generator — to the other cores)
 *   that reads each request, discards it and answers 200 at once. Every other option is the
 *   collector's default (2 s grace period, 50 000 traces and 500 000 spans held at most, alert log on stderr —
 *   written to a temporary file here).
 * - Traces look like a Python/Java/Go service instrumented with plain OpenTelemetry: a SERVER root
 *   without cost.* attributes, 5 PostgreSQL CLIENT spans (db.system.name, db.query.text with a
 *   literal that differs per span) and 1 HTTP CLIENT span. Half are on `/users/{id}/orders`
 *   (budget: 3 queries → breach), half on `/orders/{id}` (defaults: 10 queries → within budget).
 *   They are made with the real SDK (@opentelemetry/sdk-trace) and encoded with the real
 *   ProtobufTraceSerializer of @opentelemetry/otlp-transformer, before anything is timed: a pool
 *   of payloads of 14 whole traces (98 spans) each. Each send copies a payload and stamps a new
 *   sequence number into the first 4 bytes of every trace ID (offsets found once), so no trace
 *   is ever sent twice.
 * - Phase 1 (throughput): COLLECTOR_BENCH_SENDERS (8) concurrent senders POST as fast as they are
 *   answered — 429/503 are retried after Retry-After (else 1 s doubling), as an OTLP exporter
 *   does — for a warm-up longer than the grace period, then COLLECTOR_BENCH_SECONDS (10) measured:
 *   accepted spans/s (200 answers), spans forwarded to the sink per second (the collector's
 *   forwarded_spans_total over the same window), collector CPU per accepted span (/proc/<pid>/stat)
 *   and RSS; then the time until everything accepted has been forwarded (/metrics).
 * - Phase 2 (ingest latency): open-loop sends at COLLECTOR_BENCH_LATENCY_RATE spans/s when set (to
 *   compare builds at one rate), else at COLLECTOR_BENCH_LATENCY_LOAD (0.5) × the measured
 *   throughput, a warm-up longer than the grace period, then COLLECTOR_BENCH_SECONDS measured: the
 *   time from writing each POST /v1/traces to its complete response, p50/p99, and RSS at its end.
 *
 * Writes bench/results/collector.{json,md}. The whole run is bounded (watchdog at 115 s) and the
 * children are killed on exit, error or signal.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshCopy, generatePayloads } from './collector-payloads.mjs';
import { cpuMicros, memory } from './proc-stats.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');

// ───────────────────────────── the downstream sink (child process) ─────────────────────────────

/** OTLP/HTTP sink: reads each request to its end, discards it, answers 200 with an empty
 * ExportTraceServiceResponse. GET /stats answers what it has seen. */
function runSink() {
  let requests = 0;
  let bytes = 0;
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/stats') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ requests, bytes }));
      return;
    }
    req.on('data', (chunk) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      requests += 1;
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 }).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => process.stdout.write(`sink listening on ${server.address().port}\n`));
  process.stdin.on('end', () => process.exit(0)); // parent gone
  process.stdin.resume();
}

// ─────────────────────────────────────────── the bench ───────────────────────────────────────────

async function main() {
  const env = process.env;
  const SECONDS = Number(env.COLLECTOR_BENCH_SECONDS ?? 10);
  const SENDERS = Number(env.COLLECTOR_BENCH_SENDERS ?? 8);
  const POOL = Number(env.COLLECTOR_BENCH_POOL ?? 200);
  const LATENCY_LOAD = Number(env.COLLECTOR_BENCH_LATENCY_LOAD ?? 0.5);
  const LATENCY_RATE = Number(env.COLLECTOR_BENCH_LATENCY_RATE ?? 0);
  const TRACES_PER_REQUEST = 14;
  const SPANS_PER_TRACE = 7;
  const SPANS_PER_REQUEST = TRACES_PER_REQUEST * SPANS_PER_TRACE;
  const GRACE_SECONDS = 2; // the collector's default --grace-period
  const WARMUP_SECONDS = GRACE_SECONDS + 2;
  const WATCHDOG_MS = 115_000;
  if (!(SECONDS > 0 && SECONDS <= 30)) throw new Error('COLLECTOR_BENCH_SECONDS must be in (0, 30] to keep the run under 2 minutes');

  const startedAt = Date.now();
  const log = (message) => process.stdout.write(`${message}\n`);
  const children = new Set();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'collector-bench-'));
  const cleanup = () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    children.clear();
    rmSync(tmp, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM'])
    process.on(signal, () => {
      cleanup();
      process.exit(130);
    });
  const watchdog = setTimeout(() => {
    process.stderr.write(`collector-bench: still running after ${WATCHDOG_MS / 1000} s; giving up\n`);
    process.exit(1);
  }, WATCHDOG_MS);
  watchdog.unref();

  // ── Pinning: collector on core 0, sink and this process (the load generator) on the others.
  const cores = os.availableParallelism();
  const taskset = spawnSync('sh', ['-c', 'command -v taskset'], { encoding: 'utf8' }).stdout.trim();
  const pinning = Boolean(taskset) && cores >= 2;
  const otherCores = cores > 2 ? `1-${cores - 1}` : '1';
  if (pinning) {
    const self = spawnSync(taskset, ['-a', '-p', '-c', otherCores, String(process.pid)], { encoding: 'utf8' });
    if (self.status !== 0) throw new Error(`taskset on the bench process failed: ${self.stderr}`);
  }
  const pinningNote = pinning
    ? `pinned with taskset: collector on core 0; sink and load generator on core(s) ${otherCores}`
    : taskset
      ? `not pinned: only ${cores} core`
      : 'not pinned: taskset not found (collector, sink and load generator share the cores)';
  log(`collector-bench: ${cores} cores, Node ${process.version}; ${pinningNote}`);

  const spawnPinned = (core, args, options) => (pinning ? spawn(taskset, ['-c', core, ...args], options) : spawn(args[0], args.slice(1), options));
  const waitForLine = (child, pattern, what) =>
    new Promise((resolve, reject) => {
      let buffered = '';
      const onData = (chunk) => {
        buffered += chunk;
        const match = pattern.exec(buffered);
        if (match) {
          child.stdout.off('data', onData);
          resolve(match);
        }
      };
      child.stdout.setEncoding('utf8').on('data', onData);
      child.once('exit', (code, signal) =>
        reject(new Error(`${what} exited (${code ?? signal}) before it was ready${buffered ? `: ${buffered.trim()}` : ''}`)),
      );
      setTimeout(() => reject(new Error(`${what} not ready within 10 s`)), 10_000).unref();
    });

  // ── Sink.
  const sink = spawnPinned(otherCores, [process.execPath, fileURLToPath(import.meta.url), '--sink'], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.add(sink);
  const sinkPort = Number((await waitForLine(sink, /sink listening on (\d+)/, 'sink'))[1]);

  // ── Collector.
  const budgets = path.join(ROOT, 'examples/demo/budgets.yaml');
  const cli = path.join(ROOT, 'collector/dist/cli.js');
  const collectorArgs = ['--listen', '127.0.0.1:0', '--budgets', budgets, '--otlp-endpoint', `http://127.0.0.1:${sinkPort}`];
  const stderrPath = path.join(tmp, 'collector.stderr');
  const stderrFd = openSync(stderrPath, 'w');
  // COLLECTOR_BENCH_NODE_ARGS: Node flags for the collector alone, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p".
  const nodeArgs = (env.COLLECTOR_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const collector = spawnPinned('0', [process.execPath, ...nodeArgs, cli, ...collectorArgs], { stdio: ['ignore', 'pipe', stderrFd] });
  closeSync(stderrFd);
  children.add(collector);
  const collectorUrl = (
    await waitForLine(collector, /listening on (http:\/\/\S+)/, 'collector').catch((error) => {
      throw new Error(`${error.message}; its stderr: ${readFileSync(stderrPath, 'utf8').trim()}`);
    })
  )[1].replace(/\/$/, '');
  const collectorPid = collector.pid; // taskset execs the command: same pid
  const affinity = pinning ? spawnSync(taskset, ['-p', String(collectorPid)], { encoding: 'utf8' }).stdout.trim() : 'n/a';
  log(`collector ${collectorUrl} (pid ${collectorPid}, ${affinity}); sink 127.0.0.1:${sinkPort}`);

  // ── Payloads, before anything is timed.
  const generated = await generatePayloads({ pool: POOL, tracesPerRequest: TRACES_PER_REQUEST });
  const payloadBytes = generated.payloads.reduce((sum, p) => sum + p.bytes.length, 0) / generated.payloads.length;
  log(
    `payloads: ${POOL} × ${TRACES_PER_REQUEST} traces (${SPANS_PER_REQUEST} spans), ${(payloadBytes / 1024).toFixed(1)} KiB each on average, made in ${generated.ms.toFixed(0)} ms (real SDK + ProtobufTraceSerializer)`,
  );
  let sequence = 0;
  let poolIndex = 0;
  const nextBody = () => {
    const payload = generated.payloads[poolIndex];
    poolIndex = (poolIndex + 1) % generated.payloads.length;
    sequence += 1;
    return freshCopy(payload, sequence);
  };

  // ── HTTP client helpers.
  const collectorTarget = new URL(collectorUrl);
  const sendAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const metricsAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const post = (body) =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      const req = http.request(
        {
          host: collectorTarget.hostname,
          port: collectorTarget.port,
          path: '/v1/traces',
          method: 'POST',
          agent: sendAgent,
          headers: { 'content-type': 'application/x-protobuf', 'content-length': body.length },
        },
        (res) => {
          res.on('data', () => {});
          res.on('end', () => resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'], started, ended: performance.now() }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const getText = (url, agent) =>
    new Promise((resolve, reject) => {
      http
        .get(url, { agent }, (res) => {
          let text = '';
          res
            .setEncoding('utf8')
            .on('data', (chunk) => {
              text += chunk;
            })
            .on('end', () => resolve(text))
            .on('error', reject);
        })
        .on('error', reject);
    });
  const scrape = async () => {
    const before = performance.now();
    const text = await getText(`${collectorUrl}/metrics`, metricsAgent);
    return { at: (before + performance.now()) / 2, ...parseMetrics(text) };
  };
  const drained = (m) => {
    const held = m.sum('request_budget_collector_spans_in_memory') + m.sum('request_budget_collector_queue_spans');
    const settled =
      m.sum('request_budget_collector_forwarded_spans_total') +
      m.sum('request_budget_collector_dropped_spans_total', (l) => l.reason !== 'queue_full' && l.reason !== 'invalid');
    return held === 0 && settled >= m.sum('request_budget_collector_received_spans_total');
  };
  const waitDrained = async (limitMs) => {
    const start = performance.now();
    for (;;) {
      const m = await scrape();
      if (drained(m)) return { m, ms: m.at - start };
      if (performance.now() - start > limitMs) throw new Error(`collector did not forward everything within ${limitMs / 1000} s`);
      await sleep(50);
    }
  };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const failures = [];

  // ───────────────────────── Phase 1: throughput ─────────────────────────
  log(`\nphase 1: ${SENDERS} senders as fast as answered, ${WARMUP_SECONDS} s warm-up + ${SECONDS} s measured`);
  const p1 = { accepted: 0, acceptedRequests: 0, refused: 0, refusedSpans: 0, retryWaitMs: 0, window: null };
  let windowStart = Infinity;
  let windowEnd = Infinity;
  const sender = async (stopAt) => {
    let body = null;
    let backoffMs = 1000;
    while (performance.now() < stopAt) {
      body ??= nextBody();
      const res = await post(body);
      if (res.status === 200) {
        if (res.ended >= windowStart && res.ended <= windowEnd) {
          p1.accepted += SPANS_PER_REQUEST;
          p1.acceptedRequests += 1;
        }
        body = null;
        backoffMs = 1000;
      } else if (res.status === 429 || res.status === 503) {
        p1.refused += 1;
        p1.refusedSpans += SPANS_PER_REQUEST;
        const seconds = Number(res.retryAfter);
        const waitMs = Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : backoffMs;
        backoffMs = Math.min(backoffMs * 2, 30_000);
        const until = Math.min(performance.now() + waitMs, stopAt);
        p1.retryWaitMs += Math.max(0, until - performance.now());
        await sleep(Math.max(0, until - performance.now())); // then the same body again
      } else {
        failures.push(`phase 1: HTTP ${res.status}`);
        if (failures.length > 10) throw new Error(`collector answers ${res.status}: ${failures.join(', ')}`);
        body = null;
      }
    }
  };
  const loadStart = performance.now();
  const stopAt = loadStart + (WARMUP_SECONDS + SECONDS) * 1000;
  const senders = Array.from({ length: SENDERS }, () => sender(stopAt));
  await sleep(WARMUP_SECONDS * 1000);
  windowStart = performance.now();
  const cpu0 = cpuMicros(collectorPid);
  const selfCpu0 = process.cpuUsage();
  const sinkCpu0 = cpuMicros(sink.pid);
  const machine0 = machineCpuMicros();
  const m0 = await scrape();
  await sleep(Math.max(0, windowStart + SECONDS * 1000 - performance.now()));
  windowEnd = performance.now();
  const cpu1 = cpuMicros(collectorPid);
  const selfCpu1 = process.cpuUsage(selfCpu0);
  const sinkCpu1 = cpuMicros(sink.pid);
  const machine1 = machineCpuMicros();
  const mem1 = memory(collectorPid);
  const m1 = await scrape();
  await Promise.all(senders);
  const windowSeconds = (windowEnd - windowStart) / 1000;
  const drain1 = await waitDrained(30_000);
  const afterDrain = drain1.m;
  const forwardedInWindow = m1.sum('request_budget_collector_forwarded_spans_total') - m0.sum('request_budget_collector_forwarded_spans_total');
  const receivedInWindow = m1.sum('request_budget_collector_received_spans_total') - m0.sum('request_budget_collector_received_spans_total');
  const throughput = {
    spansPerSecond: p1.accepted / windowSeconds,
    forwardedSpansPerSecond: forwardedInWindow / ((m1.at - m0.at) / 1000),
    collectorReceivedSpansPerSecond: receivedInWindow / ((m1.at - m0.at) / 1000),
    cpuMicrosPerSpan: (cpu1 - cpu0) / p1.accepted,
    collectorCpuUtilisation: (cpu1 - cpu0) / 1e6 / windowSeconds,
    loadGeneratorCpuUtilisation: (selfCpu1.user + selfCpu1.system) / 1e6 / windowSeconds,
    sinkCpuUtilisation: (sinkCpu1 - sinkCpu0) / 1e6 / windowSeconds,
    // Everything else the machine ran meanwhile (other people's tests, …), in cores: the
    // figures are only comparable when this is near 0. core0Busy: core 0's use by anything.
    otherProcessesCpuUtilisation:
      (machine1.all - machine0.all - (cpu1 - cpu0) - (sinkCpu1 - sinkCpu0) - (selfCpu1.user + selfCpu1.system)) / 1e6 / windowSeconds,
    core0BusyUtilisation: (machine1.core0 - machine0.core0) / 1e6 / windowSeconds,
    rssBytes: mem1.rss,
    refusedRequests: p1.refused,
    retryWaitSeconds: p1.retryWaitMs / 1000,
    drainSecondsAfterLoad: drain1.ms / 1000,
    spansInMemoryAtEnd: m1.sum('request_budget_collector_spans_in_memory'),
    tracesInMemoryAtEnd: m1.sum('request_budget_collector_traces_in_memory'),
    heapUsedBytesAtEnd: m1.sum('request_budget_collector_nodejs_heap_size_used_bytes'),
    heapTotalBytesAtEnd: m1.sum('request_budget_collector_nodejs_heap_size_total_bytes'),
    externalBytesAtEnd: m1.sum('request_budget_collector_nodejs_external_memory_bytes'),
  };
  log(
    `accepted ${fmt(throughput.spansPerSecond)} spans/s (${fmt(p1.acceptedRequests / windowSeconds)} req/s; collector counted ${fmt(throughput.collectorReceivedSpansPerSecond)}/s), forwarded ${fmt(throughput.forwardedSpansPerSecond)} spans/s`,
  );
  log(
    `collector CPU ${throughput.cpuMicrosPerSpan.toFixed(2)} µs/span (${(throughput.collectorCpuUtilisation * 100).toFixed(0)}% of a core), RSS ${mib(mem1.rss)} MiB (peak ${mib(mem1.peakRss)} MiB), V8 heap used ${mib(throughput.heapUsedBytesAtEnd)} of ${mib(throughput.heapTotalBytesAtEnd)} MiB, external ${mib(throughput.externalBytesAtEnd)} MiB; load generator ${(throughput.loadGeneratorCpuUtilisation * 100).toFixed(0)}% and sink ${(throughput.sinkCpuUtilisation * 100).toFixed(0)}% of a core; other processes ${(throughput.otherProcessesCpuUtilisation * 100).toFixed(0)}% of a core; core 0 busy ${(throughput.core0BusyUtilisation * 100).toFixed(0)}%`,
  );
  log(
    `refused ${p1.refused} requests (429/503; senders waited ${throughput.retryWaitSeconds.toFixed(1)} s in all, out of ${SENDERS * (WARMUP_SECONDS + SECONDS)} sender-seconds); at the end of the window ${fmt(throughput.spansInMemoryAtEnd)} spans in ${fmt(throughput.tracesInMemoryAtEnd)} traces held; all forwarded ${throughput.drainSecondsAfterLoad.toFixed(2)} s after the senders stopped`,
  );

  // ───────────────────────── Phase 2: ingest latency ─────────────────────────
  const rate = (LATENCY_RATE > 0 ? LATENCY_RATE : throughput.spansPerSecond * LATENCY_LOAD) / SPANS_PER_REQUEST; // requests/s
  log(
    `\nphase 2: open loop at ${fmt(rate * SPANS_PER_REQUEST)} spans/s (${rate.toFixed(0)} req/s, ${((100 * rate * SPANS_PER_REQUEST) / throughput.spansPerSecond).toFixed(0)}% of phase 1), ${WARMUP_SECONDS} s warm-up + ${SECONDS} s measured`,
  );
  const latencies = [];
  const p2 = { sent: 0, notOk: 0, inFlightMax: 0 };
  let inFlight = 0;
  const p2Start = performance.now();
  const p2MeasureFrom = p2Start + WARMUP_SECONDS * 1000;
  const p2End = p2MeasureFrom + SECONDS * 1000;
  const pending = [];
  const cpu2a = { at: 0, cpu: 0 };
  let gc2a;
  let scheduled = p2Start;
  const interval = 1000 / rate;
  while (performance.now() < p2End) {
    const now = performance.now();
    if (!cpu2a.at && now >= p2MeasureFrom) {
      Object.assign(cpu2a, { at: now, cpu: cpuMicros(collectorPid) });
      // Resets the collector's event loop delay histogram, and marks where the GC counts start.
      gc2a = scrape();
    }
    while (scheduled <= now) {
      scheduled += interval;
      const body = nextBody();
      inFlight += 1;
      p2.inFlightMax = Math.max(p2.inFlightMax, inFlight);
      p2.sent += 1;
      pending.push(
        post(body).then((res) => {
          inFlight -= 1;
          if (res.status !== 200) p2.notOk += 1;
          else if (res.started >= p2MeasureFrom) latencies.push(res.ended - res.started);
        }),
      );
    }
    await sleep(Math.max(0, Math.min(scheduled - performance.now(), 5)));
  }
  // RSS at this rate (with COLLECTOR_BENCH_LATENCY_RATE=100000: at the throughput target's rate).
  const mem2 = memory(collectorPid);
  await Promise.all(pending);
  const p2CpuUtilisation = (cpuMicros(collectorPid) - cpu2a.cpu) / 1e3 / (performance.now() - cpu2a.at);
  // What held the event loop meanwhile: GC pauses (prom-client's histogram: count, sum, pauses over
  // 10 and 100 ms) and the event loop delay percentiles over the window.
  const [g0, g1] = [await gc2a, await scrape()];
  const gcPrefix = 'request_budget_collector_nodejs_gc_duration_seconds';
  const overBucket = (m, le) => m.sum(`${gcPrefix}_count`) - m.sum(`${gcPrefix}_bucket`, (l) => l.le === le);
  const pauses = {
    count: g1.sum(`${gcPrefix}_count`) - g0.sum(`${gcPrefix}_count`),
    totalMs: round3((g1.sum(`${gcPrefix}_sum`) - g0.sum(`${gcPrefix}_sum`)) * 1000),
    over10ms: overBucket(g1, '0.01') - overBucket(g0, '0.01'),
    over100ms: overBucket(g1, '0.1') - overBucket(g0, '0.1'),
    majorMs: round3((g1.sum(`${gcPrefix}_sum`, (l) => l.kind === 'major') - g0.sum(`${gcPrefix}_sum`, (l) => l.kind === 'major')) * 1000),
  };
  const loopDelay = {
    p99Ms: round3(g1.sum('request_budget_collector_nodejs_eventloop_lag_p99_seconds') * 1000),
    maxMs: round3(g1.sum('request_budget_collector_nodejs_eventloop_lag_max_seconds') * 1000),
  };
  const drain2 = await waitDrained(30_000);
  latencies.sort((a, b) => a - b);
  const latency = {
    p50: round3(percentile(latencies, 0.5)),
    p90: round3(percentile(latencies, 0.9)),
    p99: round3(percentile(latencies, 0.99)),
    p999: round3(percentile(latencies, 0.999)),
    max: round3(latencies.at(-1)),
    samples: latencies.length,
    requestsPerSecond: rate,
    spansPerSecond: rate * SPANS_PER_REQUEST,
    notOk: p2.notOk,
    maxInFlight: p2.inFlightMax,
    collectorCpuUtilisation: p2CpuUtilisation,
    rssBytes: mem2.rss,
    gcPauses: pauses,
    eventLoopDelay: loopDelay,
  };
  log(
    `POST /v1/traces latency p50 ${latency.p50} ms, p90 ${latency.p90} ms, p99 ${latency.p99} ms, p99.9 ${latency.p999} ms, max ${latency.max} ms over ${latency.samples} requests (${p2.notOk} not 200, at most ${p2.inFlightMax} in flight; collector at ${(p2CpuUtilisation * 100).toFixed(0)}% of a core, RSS ${mib(mem2.rss)} MiB at the end)`,
  );
  log(
    `meanwhile: GC ${pauses.count} pauses, ${pauses.totalMs} ms in all (major ${pauses.majorMs} ms), ${pauses.over10ms} over 10 ms, ${pauses.over100ms} over 100 ms; event loop delay p99 ${loopDelay.p99Ms} ms, max ${loopDelay.maxMs} ms`,
  );

  // ── Accounting and checks.
  const final = drain2.m;
  const sinkStats = JSON.parse(await getText(`http://127.0.0.1:${sinkPort}/stats`));
  const received = final.sum('request_budget_collector_received_spans_total');
  const forwarded = final.sum('request_budget_collector_forwarded_spans_total');
  const dropped = final.sum('request_budget_collector_dropped_spans_total', (l) => l.reason !== 'queue_full' && l.reason !== 'invalid');
  const roots = final.sum('request_budget_collector_roots_total', (l) => l.cost_source === 'derived');
  const judged = final.sum('request_budget_collector_judged_roots_total');
  const breaches = final.sum('request_budget_collector_breaches_total');
  const late = final.sum('request_budget_collector_late_spans_total');
  const internalErrors = final.sum('request_budget_collector_internal_errors_total');
  const processCount = final.sum('request_budget_collector_process_duration_seconds_count');
  const processMicros = processCount ? (final.sum('request_budget_collector_process_duration_seconds_sum') / processCount) * 1e6 : NaN;
  const flushed = Object.fromEntries(final.series('request_budget_collector_flushed_traces_total').map(([l, v]) => [l.reason, v]));
  // ── Stop the collector the way a deployment would (SIGTERM), then read its stderr.
  collector.kill('SIGTERM');
  const [exitCode] = await Promise.race([once(collector, 'exit'), sleep(15_000).then(() => ['timeout'])]);
  if (exitCode !== 0) failures.push(`collector exit: ${exitCode}`);
  sink.stdin.end();
  sendAgent.destroy();
  metricsAgent.destroy();
  // (after the collector has exited: the log sink writes its last lines at shutdown)
  const stderrLines = readFileSync(stderrPath, 'utf8').split('\n').filter(Boolean);
  const breachLines = stderrLines.filter((line) => line.startsWith('{')).length; // the log sink's JSON lines
  const otherLines = stderrLines.filter((line) => !line.startsWith('{'));
  const alertLog = (outcome) => final.sum('request_budget_collector_alerts', (l) => l.sink === 'log' && l.outcome === outcome);
  const accounting = {
    received,
    forwarded,
    droppedAfterAcceptance: dropped,
    refusedQueueFull: final.sum('request_budget_collector_dropped_spans_total', (l) => l.reason === 'queue_full'),
    derivedRoots: roots,
    judgedRoots: judged,
    breaches,
    breachRatio: judged ? breaches / judged : NaN,
    lateSpans: late,
    internalErrors,
    flushedTraces: flushed,
    processMicrosPerTrace: processMicros,
    sinkRequests: sinkStats.requests,
    sinkBytes: sinkStats.bytes,
    alertLogLines: breachLines,
    alertLogDropped: alertLog('dropped'),
  };
  log(
    `\naccounting: ${fmt(received)} spans accepted, ${fmt(forwarded)} forwarded, ${fmt(dropped)} dropped after acceptance, ${fmt(accounting.refusedQueueFull)} refused (queue full); ${fmt(roots)} roots derived, ${fmt(judged)} judged, ${fmt(breaches)} breaches (${(accounting.breachRatio * 100).toFixed(1)}%); ${late} late spans; traces closed by ${JSON.stringify(flushed)}; derive+judge ${processMicros.toFixed(1)} µs/trace; sink got ${fmt(sinkStats.requests)} requests; ${fmt(breachLines)} alert log lines, ${fmt(accounting.alertLogDropped)} breaches not logged (the log sink's queue of 1000 was full)`,
  );
  if (forwarded !== received || dropped !== 0) failures.push(`accounting: received ${received}, forwarded ${forwarded}, dropped ${dropped}`);
  if (roots !== received / SPANS_PER_TRACE || judged !== roots)
    failures.push(`expected ${received / SPANS_PER_TRACE} derived and judged roots, got ${roots} derived, ${judged} judged`);
  if (Math.abs(accounting.breachRatio - 0.5) > 0.02) failures.push(`breach ratio ${accounting.breachRatio}, expected ≈ 0.5`);
  if (internalErrors) failures.push(`${internalErrors} internal errors`);
  if (otherLines.length) log(`collector stderr (not alert lines):\n  ${otherLines.slice(0, 10).join('\n  ')}`);

  // ── Results.
  const cpu = os.cpus();
  const result = {
    spansPerSecond: Math.round(throughput.spansPerSecond),
    forwardedSpansPerSecond: Math.round(throughput.forwardedSpansPerSecond),
    cpuMicrosPerSpan: round3(throughput.cpuMicrosPerSpan),
    rssBytes: mem1.rss,
    ingestLatencyMs: { p50: latency.p50, p90: latency.p90, p99: latency.p99, p999: latency.p999 },
    env: {
      node: process.version,
      cpus: cpu.length,
      cpuModel: cpu[0]?.model,
      pinning: pinningNote,
      collectorArgs: collectorArgs.map((arg) => arg.replace(ROOT + path.sep, '').replace(String(sinkPort), '<sink>')),
      senders: SENDERS,
      seconds: SECONDS,
      warmupSeconds: WARMUP_SECONDS,
      latencyLoad: LATENCY_LOAD,
      encoding: 'application/x-protobuf, uncompressed (ProtobufTraceSerializer, @opentelemetry/otlp-transformer)',
      spansPerRequest: SPANS_PER_REQUEST,
      tracesPerRequest: TRACES_PER_REQUEST,
      trace: 'SERVER root without cost.* + 5 PostgreSQL CLIENT spans (literal per span) + 1 HTTP CLIENT span; half on a route whose budget they breach',
      payloadBytes: Math.round(payloadBytes),
      commit:
        git(['rev-parse', '--short', 'HEAD']) +
        (git(['status', '--porcelain', '--', 'collector/src', 'packages/core/src', 'packages/node/src']) ? ' + uncommitted changes in the sources' : ''),
      date: new Date().toISOString(),
      wallSeconds: Math.round((Date.now() - startedAt) / 1000),
    },
    details: {
      throughput: { ...mapValues(throughput, round3), peakRssBytes: mem1.peakRss },
      ingestLatency: mapValues(latency, round3),
      accounting: mapValues(accounting, (v) => (typeof v === 'number' ? round3(v) : v)),
      failures,
    },
  };
  const outDir = path.join(HERE, 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'collector.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(path.join(outDir, 'collector.md'), markdown(result));
  log(
    `\nsummary: ${fmt(result.spansPerSecond)} spans/s accepted, ${fmt(result.forwardedSpansPerSecond)} spans/s forwarded, ${result.cpuMicrosPerSpan} µs CPU/span, RSS ${mib(result.rssBytes)} MiB, ingest p50 ${latency.p50} ms / p99 ${latency.p99} ms (${pinning ? 'pinned' : 'not pinned'}); ${result.env.wallSeconds} s`,
  );
  log('wrote bench/results/collector.json, bench/results/collector.md');
  if (failures.length) {
    process.stderr.write(`collector-bench: checks failed:\n  ${failures.join('\n  ')}\n`);
    process.exitCode = 1;
  }
  clearTimeout(watchdog);
  cleanup();
}

// ─────────────────────────────────────────── helpers ───────────────────────────────────────────

/** Busy CPU time (not idle, not iowait) of the whole machine and of core 0 so far, in µs. */
function machineCpuMicros() {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const busy = (prefix) => {
    const fields = lines
      .find((line) => line.startsWith(`${prefix} `))
      ?.trim()
      .split(/\s+/)
      .slice(1, 9)
      .map(Number);
    if (!fields) return NaN;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = fields;
    return ((user + nice + system + irq + softirq + steal) * 1e6) / CLOCK_TICKS;
  };
  return { all: busy('cpu'), core0: busy('cpu0') };
}
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** Prometheus text → sum(name, labelFilter) and series(name). */
function parseMetrics(text) {
  const rows = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
    rows.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return {
    sum: (name, filter = () => true) => rows.filter((r) => r.name === name && filter(r.labels)).reduce((sum, r) => sum + r.value, 0),
    series: (name) => rows.filter((r) => r.name === name).map((r) => [r.labels, r.value]),
  };
}

function git(args) {
  return spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' }).stdout?.trim() ?? '';
}
function percentile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}
function round3(value) {
  return typeof value === 'number' && Number.isFinite(value) ? Math.round(value * 1000) / 1000 : value;
}
function mapValues(object, fn) {
  return Object.fromEntries(Object.entries(object).map(([k, v]) => [k, fn(v)]));
}
function fmt(value) {
  return Math.round(value).toLocaleString('en');
}
function mib(bytes) {
  return (bytes / 2 ** 20).toFixed(0);
}

function markdown(r) {
  const t = r.details.throughput;
  const l = r.details.ingestLatency;
  const a = r.details.accounting;
  return `# request-budget-collector benchmark

\`npm run bench:collector\` (bench/collector-bench.mjs), ${r.env.date}, commit ${r.env.commit}, Node ${r.env.node}, ${r.env.cpus} × ${r.env.cpuModel}.
${r.env.pinning}. Collector: \`${['request-budget-collector', ...r.env.collectorArgs].join(' ')}\` (every other option default).
Load: ${r.env.tracesPerRequest} traces (${r.env.spansPerRequest} spans, ${(r.env.payloadBytes / 1024).toFixed(1)} KiB) per POST, ${r.env.encoding}; each trace a ${r.env.trace}.

| figure | value |
|---|---:|
| accepted spans/s (${r.env.senders} senders, ${r.env.seconds} s after ${r.env.warmupSeconds} s warm-up) | ${fmt(r.spansPerSecond)} |
| forwarded to the OTLP sink, spans/s (same window) | ${fmt(r.forwardedSpansPerSecond)} |
| collector CPU per accepted span | ${r.cpuMicrosPerSpan} µs |
| collector CPU use during the window | ${(t.collectorCpuUtilisation * 100).toFixed(0)}% of a core |
| meanwhile: load generator, sink, other processes | ${(t.loadGeneratorCpuUtilisation * 100).toFixed(0)}%, ${(t.sinkCpuUtilisation * 100).toFixed(0)}%, ${(t.otherProcessesCpuUtilisation * 100).toFixed(0)}% of a core |
| RSS at the end of the window (peak) | ${mib(r.rssBytes)} MiB (${mib(t.peakRssBytes)} MiB) |
| spans held at the end of the window | ${fmt(t.spansInMemoryAtEnd)} in ${fmt(t.tracesInMemoryAtEnd)} traces |
| requests refused (503 + Retry-After: queue full), time senders waited | ${t.refusedRequests}, ${t.retryWaitSeconds} s of ${r.env.senders * (r.env.warmupSeconds + r.env.seconds)} sender-seconds |
| everything forwarded after the senders stopped | ${t.drainSecondsAfterLoad} s |
| derive + judge per trace (collector histogram) | ${a.processMicrosPerTrace.toFixed(1)} µs |
| ingest latency at ${fmt(l.spansPerSecond)} spans/s (${(r.env.latencyLoad * 100).toFixed(0)}%), p50 | ${r.ingestLatencyMs.p50} ms |
| ingest latency, p90 / p99 / p99.9 (max) | ${r.ingestLatencyMs.p90} / ${r.ingestLatencyMs.p99} / ${r.ingestLatencyMs.p999} ms (${l.max} ms), ${fmt(l.samples)} requests |
| RSS at the end of the latency window | ${mib(l.rssBytes)} MiB |

Accounting over the whole run: ${fmt(a.received)} spans accepted, ${fmt(a.forwarded)} forwarded, ${fmt(a.droppedAfterAcceptance)} dropped; ${fmt(a.judgedRoots)} derived roots judged, ${fmt(a.breaches)} breaches (${(a.breachRatio * 100).toFixed(1)}%), ${fmt(a.alertLogLines)} alert log lines (${fmt(a.alertLogDropped)} breaches not logged: the log sink keeps at most 1000 lines per 200 ms); ${a.lateSpans} late spans; traces closed by ${Object.entries(
    a.flushedTraces,
  )
    .map(([k, v]) => `${k} ${fmt(v)}`)
    .join(', ')}.
${r.details.failures.length ? `\nChecks failed: ${r.details.failures.join('; ')}\n` : ''}`;
}

if (process.argv[2] === '--sink') runSink();
else await main();
