/**
 * The collector's own metrics, served as Prometheus text on /metrics (prom-client, one registry
 * per collector instance). Every span is accounted for: received = forwarded + dropped (by
 * reason) + still held (in traces or downstream queues).
 */
import { resourceLimits } from 'node:worker_threads';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Read live when /metrics is scraped. */
export interface LiveFigures {
  tracesInMemory(): number;
  spansInMemory(): number;
  recordsInMemory(): number;
  queueDepth(): Record<string, number>;
  queueCapacity(): number;
  /** Estimated bytes of the spans held (traces and queues), and the --memory-limit. */
  heldBytes(): number;
  /** Bytes of the export requests in flight (bodies being read, inflated, decoded), counted with them against the limit. */
  inFlightBytes(): number;
  memoryLimitBytes(): number;
  alertStats(): Record<string, { delivered: number; failed: number; dropped: number }>;
}

export class CollectorMetrics {
  readonly registry = new Registry();
  readonly receivedRequests: Counter<'encoding' | 'code'>;
  readonly receivedSpans: Counter<'encoding'>;
  readonly forwardedSpans: Counter<'downstream'>;
  readonly forwardRetries: Counter<'downstream'>;
  readonly droppedSpans: Counter<'reason' | 'downstream'>;
  readonly flushedTraces: Counter<'reason'>;
  readonly lateSpans: Counter;
  readonly roots: Counter<'cost_source'>;
  readonly judgedRoots: Counter;
  readonly breaches: Counter<'service' | 'metric' | 'severity'>;
  readonly processSeconds: Histogram;
  readonly internalErrors: Counter;
  readonly memoryRefusedRequests: Counter;
  readonly spooledSpans: Counter<'downstream'>;
  readonly spoolLoadedSpans: Counter<'downstream'>;

  constructor(live: LiveFigures) {
    const registers = [this.registry];
    const prefix = 'request_budget_collector_';
    this.receivedRequests = new Counter({
      name: `${prefix}received_requests_total`,
      help: 'OTLP export requests received, by encoding and HTTP status answered',
      labelNames: ['encoding', 'code'],
      registers,
    });
    this.receivedSpans = new Counter({ name: `${prefix}received_spans_total`, help: 'Spans accepted', labelNames: ['encoding'], registers });
    this.forwardedSpans = new Counter({
      name: `${prefix}forwarded_spans_total`,
      help: 'Spans delivered to a downstream',
      labelNames: ['downstream'],
      registers,
    });
    this.forwardRetries = new Counter({
      name: `${prefix}forward_retries_total`,
      help: 'Failed sends to a downstream that will be retried',
      labelNames: ['downstream'],
      registers,
    });
    this.droppedSpans = new Counter({
      name: `${prefix}dropped_spans_total`,
      help: 'Spans not delivered, by reason: queue_full and invalid (refused at receipt, the sender was told), downstream_rejected, downstream_partial, retries_exhausted, shutdown, no_downstream',
      labelNames: ['reason', 'downstream'],
      registers,
    });
    this.flushedTraces = new Counter({
      name: `${prefix}flushed_traces_total`,
      help: 'Traces processed, by what closed their window',
      labelNames: ['reason'],
      registers,
    });
    this.lateSpans = new Counter({
      name: `${prefix}late_spans_total`,
      help: 'Spans that arrived after their trace had been processed (processed in a window of their own)',
      registers,
    });
    this.roots = new Counter({
      name: `${prefix}roots_total`,
      help: 'Local root spans (requests and jobs), by where their cost record came from: derived here, or sdk',
      labelNames: ['cost_source'],
      registers,
    });
    this.judgedRoots = new Counter({ name: `${prefix}judged_roots_total`, help: 'Root spans judged against the budget file here', registers });
    this.breaches = new Counter({
      name: `${prefix}breaches_total`,
      help: "Budget violations found here, by service (the service.name of the span's resource), metric and severity",
      labelNames: ['service', 'metric', 'severity'],
      registers,
    });
    this.processSeconds = new Histogram({
      name: `${prefix}process_duration_seconds`,
      help: 'Time to derive and judge the cost of one trace',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers,
    });
    this.internalErrors = new Counter({ name: `${prefix}internal_errors_total`, help: 'Unexpected errors caught (each is logged)', registers });
    this.memoryRefusedRequests = new Counter({
      name: `${prefix}memory_refused_requests_total`,
      help: 'Export requests refused with 503 (gRPC: UNAVAILABLE) for memory: before their body was read, because the spans held and the requests in flight were estimated at the soft memory limit (80 % of --memory-limit) or more; or while it was read, because it would have passed --memory-limit',
      registers,
    });
    this.spooledSpans = new Counter({
      name: `${prefix}spooled_spans_total`,
      help: 'Spans not yet acknowledged by a downstream at the shutdown deadline, written to --spool-dir (sent at the next start)',
      labelNames: ['downstream'],
      registers,
    });
    this.spoolLoadedSpans = new Counter({
      name: `${prefix}spool_loaded_spans_total`,
      help: 'Spans read back from --spool-dir at start into a downstream queue',
      labelNames: ['downstream'],
      registers,
    });
    new Gauge({
      name: `${prefix}memory_held_bytes`,
      help: 'Estimated memory of the spans held, in traces and waiting for a downstream (see --memory-limit)',
      registers,
      collect() {
        this.set(live.heldBytes());
      },
    });
    new Gauge({
      name: `${prefix}memory_in_flight_bytes`,
      help: 'Bytes of the OTLP/HTTP export requests in flight: bodies being read, inflated and decoded (counted with memory_held_bytes against --memory-limit; a gRPC message is decoded in one go as it arrives, checked against the limit alone)',
      registers,
      collect() {
        this.set(live.inFlightBytes());
      },
    });
    new Gauge({
      name: `${prefix}memory_limit_bytes`,
      help: 'The --memory-limit: from 80 % of it, export requests are refused with 503',
      registers,
      collect() {
        this.set(live.memoryLimitBytes());
      },
    });
    new Gauge({
      name: `${prefix}traces_in_memory`,
      help: 'Traces held, waiting for their root and grace period',
      registers,
      collect() {
        this.set(live.tracesInMemory());
      },
    });
    new Gauge({
      name: `${prefix}spans_in_memory`,
      help: 'Spans held whole (those that may be roots) in traces not yet processed',
      registers,
      collect() {
        this.set(live.spansInMemory());
      },
    });
    new Gauge({
      name: `${prefix}span_records_in_memory`,
      help: "Records held of spans forwarded as they came (spans that cannot be roots), for their trace's judgement",
      registers,
      collect() {
        this.set(live.recordsInMemory());
      },
    });
    new Gauge({
      name: `${prefix}queue_spans`,
      help: 'Spans waiting for (or being sent to) a downstream',
      labelNames: ['downstream'],
      registers,
      collect() {
        for (const [downstream, depth] of Object.entries(live.queueDepth())) this.set({ downstream }, depth);
      },
    });
    new Gauge({
      name: `${prefix}queue_capacity_spans`,
      help: 'Spans that may be held (traces plus queues) before senders are refused with 503',
      registers,
      collect() {
        this.set(live.queueCapacity());
      },
    });
    new Gauge({
      name: `${prefix}alerts`,
      help: 'Alert deliveries by sink and outcome (delivered, failed attempts, dropped breaches)',
      labelNames: ['sink', 'outcome'],
      registers,
      collect() {
        for (const [sink, stats] of Object.entries(live.alertStats())) {
          for (const outcome of ['delivered', 'failed', 'dropped'] as const) this.set({ sink, outcome }, stats[outcome]);
        }
      },
    });
    new Gauge({
      name: `${prefix}young_generation_limit_bytes`,
      help: "The young generation of the collector's JavaScript heap, as its worker thread was given it (see the README's Memory); 0 when Node's own flag sizes it",
      registers,
    }).set((resourceLimits.maxYoungGenerationSizeMb ?? 0) * 1024 * 1024);
    collectDefaultMetrics({ register: this.registry, prefix });
  }
}
