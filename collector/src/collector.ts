/**
 * A running collector: the HTTP receiver, the trace buffer, the trace processor (core's cost and
 * budget logic), the downstream queues and the alert sinks, wired together.
 *
 *   POST /v1/traces → decode → TraceBuffer (by trace, until root + grace) → TraceProcessor
 *     (derive cost, judge, mark) → alerts + metrics → Downstream queues (OTLP, Zipkin) → retry
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { BudgetRuleSet, loadBudgetFile, type Budgets } from '@request-budget/core';
import { createAlertDispatcher, type AlertDispatcher } from '@request-budget/alerts';
import type { CollectorConfig } from './config';
import { Downstream, type DropReason } from './exporter/downstream';
import { createRequestHandler } from './receiver/http-receiver';
import { CollectorMetrics } from './metrics';
import { CONTENT_TYPES, encodeTraceRequest } from './exporter/otlp-encode';
import type { CollectedSpan } from './otlp/otlp-model';
import { ExportTraceServiceResponse } from './otlp/otlp-schema';
import { TraceBuffer, type FlushReason } from './processor/trace-buffer';
import { TraceProcessor } from './processor/trace-processor';
import type { SpanFacts } from './processor/span-facts';
import { QueueBytes } from './processor/queue-bytes';
import { memoryOverrun, memoryRefusal, softLimitOf, withMemoryGate, type MemoryFigures } from './receiver/memory-gate';
import { InFlightBytes } from './receiver/in-flight-bytes';
import { GrpcBindError, startGrpcReceiver, type GrpcReceiver } from './receiver/grpc-receiver';
import { toZipkinSpan } from './exporter/zipkin';
import { Spool } from './exporter/spool';

export interface Logger {
  /** One line for the operator (stderr by default). */
  (message: string): void;
}

export interface RunningCollector {
  /** `http://host:port` the receiver listens on. */
  readonly url: string;
  readonly port: number;
  /** `host:port` OTLP/gRPC is received on; undefined when --grpc-listen is off. */
  readonly grpcAddress: string | undefined;
  readonly metrics: CollectorMetrics;
  /** Stops receiving, processes what is held and delivers it (within the shutdown timeout). Safe to call twice. */
  shutdown(): Promise<void>;
}

/** Starts a collector. Throws BudgetFileError for a bad budget file, or a listen error. */
export async function startCollector(config: CollectorConfig, log: Logger = defaultLogger): Promise<RunningCollector> {
  const budgets: Budgets | undefined = config.budgetsPath === undefined ? undefined : loadBudgetFile(config.budgetsPath);
  const processor = new TraceProcessor({
    ...(budgets !== undefined ? { rules: new BudgetRuleSet(budgets) } : {}),
    errorStatusOnCritical: config.errorOnCritical,
  });
  const alerts =
    budgets === undefined
      ? undefined
      : createAlertDispatcher(
          {
            log: config.alertLog,
            alertmanagerUrl: config.alertmanagerUrl,
            alertmanagerHeaders: config.alertmanagerHeaders,
            resendIntervalMs: config.alertResendIntervalMs,
            resolveAfterMs: config.alertResolveAfterMs,
            webhookUrl: config.webhookUrl,
            webhookHeaders: config.webhookHeaders,
            traceUrl: config.traceUrl,
          },
          log,
        );
  const downstreams: Downstream[] = [];
  let shuttingDown = false;
  let noDownstreamReported = false;

  const metrics: CollectorMetrics = new CollectorMetrics({
    tracesInMemory: () => buffer.traceCount,
    spansInMemory: () => buffer.spanCount,
    recordsInMemory: () => buffer.recordCount,
    queueDepth: () => Object.fromEntries(downstreams.map((downstream) => [downstream.name, downstream.depth])),
    queueCapacity: () => config.maxQueueSpans,
    heldBytes: () => heldBytes(),
    inFlightBytes: () => inFlight.bytes,
    memoryLimitBytes: () => config.memoryLimitBytes,
    alertStats: () => alerts?.stats() ?? {},
  });

  const spool =
    config.spoolDir === undefined
      ? undefined
      : new Spool(config.spoolDir, {
          log,
          onSpooled: (downstream, spans) => metrics.spooledSpans.inc({ downstream }, spans),
          onLoaded: (downstream, spans) => metrics.spoolLoadedSpans.inc({ downstream }, spans),
        });
  // Estimated bytes of the spans in each downstream's queue (the spans are shared between queues).
  const queueBytes = new Map<string, QueueBytes>();
  const downstreamOptions = (name: string) => ({
    name,
    maxBatchSpans: config.maxBatchSpans,
    concurrency: config.forwardConcurrency,
    requestTimeoutMs: config.forwardTimeoutMs,
    initialBackoffMs: config.retryInitialBackoffMs,
    maxBackoffMs: config.retryMaxBackoffMs,
    maxElapsedMs: config.retryMaxElapsedMs,
    spool,
    // Spans read from the spool were never added to the queue's bytes.
    onForwarded: (spans: number, spooled: boolean) => {
      if (!spooled) queueBytes.get(name)?.remove(spans);
      metrics.forwardedSpans.inc({ downstream: name }, spans);
    },
    onRetry: () => metrics.forwardRetries.inc({ downstream: name }),
    onDropped: (spans: number, reason: DropReason, spooled: boolean) => {
      if (!spooled) queueBytes.get(name)?.remove(spans);
      metrics.droppedSpans.inc({ reason, downstream: name }, spans);
    },
    onProblem: log,
  });
  if (config.otlpEndpoint !== undefined) {
    downstreams.push(
      new Downstream({
        ...downstreamOptions('otlp'),
        url: config.otlpEndpoint,
        headers: config.otlpHeaders,
        encode: (spans) => ({ body: encodeTraceRequest(spans), contentType: CONTENT_TYPES.protobuf }),
        rejectedIn: (response, body) => {
          if (body.length === 0 || !(response.header('content-type') ?? '').startsWith(CONTENT_TYPES.protobuf)) return 0;
          const decoded = ExportTraceServiceResponse.toObject(ExportTraceServiceResponse.decode(body), { longs: Number }) as {
            partialSuccess?: { rejectedSpans?: number };
          };
          return decoded.partialSuccess?.rejectedSpans ?? 0;
        },
      }),
    );
  }
  if (config.zipkinEndpoint !== undefined) {
    downstreams.push(
      new Downstream({
        ...downstreamOptions('zipkin'),
        url: config.zipkinEndpoint,
        encode: (spans) => ({ body: Buffer.from(JSON.stringify(spans.map(toZipkinSpan))), contentType: 'application/json' }),
      }),
    );
  }
  for (const downstream of downstreams) queueBytes.set(downstream.name, new QueueBytes());
  // Half the memory limit at most: the other half stays for what senders send meanwhile.
  spool?.load(downstreams, config.maxQueueSpans, Math.floor(config.memoryLimitBytes / 2));
  if (downstreams.length === 0)
    log('no --otlp-endpoint or --zipkin-endpoint: spans are judged and alerted on, then dropped (counted as no_downstream); /readyz answers 503');

  // Spans that cannot be roots, as they arrive; roots once their trace is judged.
  const forward = (spans: CollectedSpan[]): void => {
    if (downstreams.length === 0) {
      metrics.droppedSpans.inc({ reason: 'no_downstream', downstream: 'none' }, spans.length);
      if (!noDownstreamReported) log(`dropping processed spans: no downstream configured (reported once; see request_budget_collector_dropped_spans_total)`);
      noDownstreamReported = true;
      return;
    }
    for (const downstream of downstreams) {
      queueBytes.get(downstream.name)?.add(spans);
      downstream.enqueue(spans);
    }
  };

  const processTrace = (spans: CollectedSpan[], reason: FlushReason, forwarded: SpanFacts[]): void => {
    metrics.flushedTraces.inc({ reason });
    // Closed before its window ended: said once per interval, with the fix.
    if (reason === 'traces_full')
      refusals.report(
        'traces_full',
        1,
        (total) =>
          `--max-traces (${config.maxTraces}) reached: ${total} trace(s) judged before their grace period ended (spans of theirs still on the way are judged apart, counted as late); raise --max-traces, memory stays bounded by --memory-limit`,
      );
    else if (reason === 'trace_full')
      refusals.report(
        'trace_full',
        1,
        (total) =>
          `--max-spans-per-trace (${config.maxSpansPerTrace}) reached: ${total} trace(s) judged with the spans held so far (the rest are judged apart, counted as late); raise --max-spans-per-trace`,
      );
    const started = performance.now();
    let outcome;
    try {
      outcome = processor.process(spans, forwarded);
    } catch (error) {
      // Forwarded as it came: a processing bug must not lose spans.
      metrics.internalErrors.inc();
      log(`could not process trace ${spans[0]?.traceId ?? '(no span held whole)'}: ${(error as Error)?.stack ?? String(error)}; forwarding it unjudged`);
    }
    metrics.processSeconds.observe((performance.now() - started) / 1000);
    if (outcome !== undefined) {
      metrics.roots.inc({ cost_source: 'derived' }, outcome.derived);
      metrics.roots.inc({ cost_source: 'sdk' }, outcome.roots - outcome.derived);
      metrics.judgedRoots.inc(outcome.judged);
      for (const breach of outcome.breaches) metrics.breaches.inc({ service: breach.service, metric: breach.metric, severity: breach.severity });
      if (outcome.breaches.length > 0) alerts?.report(outcome.breaches);
    }
    if (spans.length > 0) forward(spans);
  };

  const buffer: TraceBuffer = new TraceBuffer({
    graceMs: config.graceMs,
    maxWaitMs: config.maxTraceWaitMs,
    maxTraces: config.maxTraces,
    maxSpansPerTrace: config.maxSpansPerTrace,
    copiesPerSpan: downstreams.length,
    onFlush: processTrace,
    onForward: forward,
    costs: processor.costs,
    onError: (error, during) => {
      metrics.internalErrors.inc();
      log(`trace window: failed ${during}: ${(error as Error)?.stack ?? String(error)}`);
    },
    onLateSpans: (count) => metrics.lateSpans.inc(count),
  });

  const held = () => buffer.spanCount + Math.max(0, ...downstreams.map((downstream) => downstream.depth));
  // Every queue holds the same spans in about the same order: the longest holds them all.
  const heldBytes = () => buffer.byteCount + Math.max(0, ...[...queueBytes.values()].map((queue) => queue.bytes)) + (spool?.loadedBytes ?? 0);
  // Bodies being read, inflated and decoded (HTTP and gRPC) count with the spans held.
  const inFlight = new InFlightBytes();
  const memory: MemoryFigures = { limitBytes: config.memoryLimitBytes, heldBytes, inFlightBytes: () => inFlight.bytes };
  const refusals = new RateLimitedLog(log, 10_000);
  const retryAfterSeconds = () => Math.min(60, Math.max(1, Math.ceil(Math.max(0, ...downstreams.map((downstream) => downstream.retryInMs)) / 1000)));
  // What both receivers (HTTP and gRPC) share: the capacity check, the intake and the refusal counts.
  const intake = {
    capacity: () => ({
      held: held(),
      max: config.maxQueueSpans,
      retryAfterSeconds: retryAfterSeconds(),
    }),
    accept: (spans: CollectedSpan[]) => buffer.add(spans),
    isShuttingDown: () => shuttingDown,
    reportProblem: log,
    onRefusedSpans: (count: number, reason: 'queue_full' | 'invalid') => {
      metrics.droppedSpans.inc({ reason, downstream: 'none' }, count);
      if (reason === 'queue_full')
        refusals.report('queue_full', count, (total) => `queue full: refused ${total} span(s) with 503 + Retry-After (gRPC: UNAVAILABLE; senders may retry)`);
      else refusals.report('invalid', count, (total) => `refused ${total} span(s) with invalid ids (answered as partial success)`);
    },
  };
  const receive = createRequestHandler({
    ...intake,
    maxBodyBytes: config.maxBodyBytes,
    maxConcurrentRequests: config.maxConcurrentRequests,
    stalledAfterMs: config.idleTimeoutMs / 4,
    authToken: config.authToken,
    metrics,
    inFlight,
    memoryOverrun: (moreBytes) => memoryOverrun(memory, moreBytes),
    onMemoryOverrun: () => reportMemoryOverrun(),
    notReadyReasons: () => {
      const reasons: string[] = [];
      if (shuttingDown) reasons.push('shutting down');
      if (downstreams.length === 0) reasons.push('no downstream configured (--otlp-endpoint, --zipkin-endpoint)');
      if (held() >= config.maxQueueSpans) reasons.push(`queue full (${held()} of ${config.maxQueueSpans} spans held)`);
      if (heldBytes() >= softLimitOf(config.memoryLimitBytes))
        reasons.push(`memory limit (spans held estimated at ${heldBytes()} bytes, soft limit ${softLimitOf(config.memoryLimitBytes)})`);
      return reasons;
    },
    // Counted in received_requests_total{code="503"}: its spans are unknown (the body is not read).
    onTooManyRequests: () =>
      refusals.report(
        'too_many_requests',
        1,
        (total) =>
          `too many requests at once: refused ${total} request(s) beyond --max-concurrent-requests (${config.maxConcurrentRequests}) with 503 + Retry-After: 1 (senders may retry)`,
      ),
    onStalledBodyCut: () =>
      refusals.report(
        'stalled_body_cut',
        1,
        (total) =>
          `all --max-concurrent-requests (${config.maxConcurrentRequests}) slots taken: closed ${total} connection(s) whose body had stalled (no byte for ${config.idleTimeoutMs / 4} ms) to receive new requests`,
      ),
  });

  const handler = withMemoryGate(receive, {
    ...memory,
    retryAfterSeconds,
    discardLimitBytes: config.maxBodyBytes * 4,
    onRefused: (encoding) => {
      metrics.receivedRequests.inc({ encoding, code: '503' });
      reportMemoryRefusal();
    },
  });
  const reportMemoryRefusal = () => {
    metrics.memoryRefusedRequests.inc();
    refusals.report(
      'memory_limit',
      1,
      (total) =>
        `memory limit: refused ${total} request(s) with 503 + Retry-After before reading them (gRPC: UNAVAILABLE before decoding; spans held and requests in flight ≥ 80 % of --memory-limit, or a message that would pass it; senders may retry)`,
    );
  };
  const reportMemoryOverrun = () => {
    metrics.memoryRefusedRequests.inc();
    refusals.report(
      'memory_overrun',
      1,
      (total) =>
        `memory limit: refused ${total} request(s) with 503 + Retry-After while reading them (their body, with the spans held and the other requests in flight, would have passed --memory-limit; senders may retry)`,
    );
  };
  const server = http.createServer(
    {
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      keepAliveTimeout: config.keepAliveTimeoutMs,
      // How often the headers and request timeouts are checked: Node's 30 s would add up to 30 s to each.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, config.headersTimeoutMs / 4)),
    },
    handler,
  );
  // A silent connection — nothing sent yet, a stalled body, an answer not read — is destroyed.
  server.setTimeout(config.idleTimeoutMs);
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    // Answered when nothing was yet, then destroyed: ended only, a peer that never reads nor
    // closes would keep the socket (and a file handle) half-open for good.
    const status = CLIENT_ERROR_STATUS[error.code ?? ''] ?? '400 Bad Request';
    if (socket.writable && socket.bytesWritten === 0 && error.code !== 'ECONNRESET')
      socket.write(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listenPort, config.listenHost, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error) => log(`server error: ${error.message}`));
  let grpcReceiver: GrpcReceiver | undefined;
  if (config.grpcListen !== undefined) {
    try {
      grpcReceiver = await startGrpcReceiver({
        ...intake,
        ...config.grpcListen,
        maxMessageBytes: config.maxBodyBytes,
        authToken: config.authToken,
        metrics,
        memoryRefusal: () => memoryRefusal(memory),
        memoryOverrun: (bytes) => memoryOverrun(memory, bytes),
        onMemoryRefused: reportMemoryRefusal,
        inFlight,
      });
    } catch (error) {
      server.close();
      const { host, port } = config.grpcListen;
      const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
      if (error instanceof GrpcBindError && error.code === 'EADDRINUSE')
        throw new Error(`${address} (--grpc-listen, OTLP/gRPC) is in use; give --grpc-listen another port, or --grpc-listen off`, { cause: error });
      throw new Error(`cannot receive OTLP/gRPC on ${address}: ${(error as Error).message}`, { cause: error });
    }
  }
  const { port, address, family } = server.address() as AddressInfo;
  const host = family === 'IPv6' ? `[${address}]` : address;

  let stopping: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    port,
    grpcAddress: grpcReceiver?.address,
    metrics,
    shutdown() {
      stopping ??= (async () => {
        shuttingDown = true;
        const deadline = Date.now() + config.shutdownTimeoutMs;
        const grpcStopped = grpcReceiver?.shutdown(deadline);
        // No new connections; requests under way finish (they are answered 503 from now on).
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        buffer.flushAll('shutdown');
        await Promise.all([...downstreams.map((downstream) => downstream.drain(deadline)), flushAlerts(alerts, deadline, log)]);
        refusals.flush();
        server.closeAllConnections();
        await Promise.all([closed, grpcStopped]);
      })();
      return stopping;
    },
  };
}

/** The answer to a request that never reached the handler, by the error Node reports. */
const CLIENT_ERROR_STATUS: Readonly<Record<string, string>> = {
  ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout',
  HPE_HEADER_OVERFLOW: '431 Request Header Fields Too Large',
};

/**
 * Flushes the alert sinks within the shutdown deadline, beside the downstream queues: a webhook
 * that does not answer would otherwise hold shutdown for its retries (a request timeout per batch).
 */
async function flushAlerts(alerts: AlertDispatcher | undefined, deadlineMs: number, log: Logger): Promise<void> {
  if (alerts === undefined) return;
  const timedOut = Symbol('timeout');
  const outcome = await Promise.race([alerts.shutdown(), sleep(Math.max(0, deadlineMs - Date.now()), timedOut, { ref: false })]);
  if (outcome === timedOut)
    log('shutdown deadline reached with alerts still being sent; those not delivered are dropped (see request_budget_collector_alerts)');
}

/** One line per streak of the same problem, with a count, at most every `intervalMs`. */
class RateLimitedLog {
  private readonly pending = new Map<string, { count: number; format: (total: number) => string }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  report(key: string, count: number, format: (total: number) => string): void {
    if (this.timer === undefined) {
      this.log(format(count));
      this.timer = setTimeout(() => this.flush(), this.intervalMs).unref();
      return;
    }
    const entry = this.pending.get(key);
    if (entry === undefined) this.pending.set(key, { count, format });
    else entry.count += count;
  }

  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    for (const { count, format } of this.pending.values()) this.log(`${format(count)} (since the last report)`);
    this.pending.clear();
  }
}

function defaultLogger(message: string): void {
  try {
    process.stderr.write(`request-budget-collector: ${message}\n`);
  } catch {
    // stderr closed: nothing left to tell.
  }
}
