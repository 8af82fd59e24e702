import type { Instrumentation } from '@opentelemetry/instrumentation';
import type { Sampler, SpanProcessor } from '@opentelemetry/sdk-trace';
import type { InstrumentationName } from './instrumentations';

/** Trace exporters selectable by name, as in OTEL_TRACES_EXPORTER. */
export type TraceExporterName = 'otlp' | 'zipkin' | 'console' | 'none';

/** Metric exporters selectable by name, as in OTEL_METRICS_EXPORTER. */
export type MetricExporterOptionName = 'prometheus' | 'otlp' | 'console' | 'none';

/** OTLP transport, as in OTEL_EXPORTER_OTLP_PROTOCOL. */
export type OtlpProtocol = 'http/protobuf' | 'http/json' | 'grpc';

/**
 * Options of {@link start}. Each one falls back to its environment variable, then to its
 * default; `register` passes none, so it is configured by the environment alone.
 */
export interface RequestBudgetOptions {
  /**
   * Service name on every span. Env: OTEL_SERVICE_NAME.
   * @default the OpenTelemetry default (`unknown_service:node`)
   */
  serviceName?: string;
  /**
   * Where traces go. Env: OTEL_TRACES_EXPORTER (comma-separated).
   * @default `['otlp']` when an OTLP endpoint is set in the environment, otherwise none (and
   * the per-request summary is printed instead)
   */
  traceExporters?: TraceExporterName[];
  /**
   * OTLP transport. Env: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then OTEL_EXPORTER_OTLP_PROTOCOL.
   * @default 'http/protobuf'
   */
  otlpProtocol?: OtlpProtocol;
  /**
   * Full OTLP traces URL. Env: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT
   * plus `/v1/traces`.
   * @default 'http://localhost:4318/v1/traces' (grpc: 'http://localhost:4317')
   */
  otlpEndpoint?: string;
  /**
   * Zipkin v2 spans URL. Env: OTEL_EXPORTER_ZIPKIN_ENDPOINT.
   * @default 'http://localhost:9411/api/v2/spans'
   */
  zipkinEndpoint?: string;
  /**
   * Print one line per request (route, status, duration and the cost record) on stderr.
   * Env: REQUEST_BUDGET_SUMMARY (true/false).
   * @default true when no trace exporter is configured, false otherwise
   */
  summary?: boolean;
  /**
   * Sampler deciding which traces are exported. Cost attribution runs for every request
   * whatever it decides. Env: OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
   * @default parentbased_always_on
   */
  sampler?: Sampler;
  /**
   * Instrumentations to install, by name. Env: OTEL_NODE_ENABLED_INSTRUMENTATIONS and
   * OTEL_NODE_DISABLED_INSTRUMENTATIONS.
   * @default all: http, express, fastify, koa, pg, postgres, mysql2, ioredis, redis, undici, mongodb, bullmq, amqplib, pg-boss
   */
  instrumentations?: InstrumentationName[];
  /**
   * Attribute the bytes each request's own code allocates (`cost.memory.allocated_bytes`) and keep
   * each route's estimate of memory per request (`cost.memory.route_estimate_bytes`), whatever
   * runs beside it: async hooks and a heap reading whenever the running request changes.
   * Env: REQUEST_BUDGET_MEMORY_ATTRIBUTION.
   * @default true
   */
  memoryAttribution?: boolean;
  /**
   * Share of the time requests are measured for memory attribution, in windows of a second
   * (its async hooks cost every request in flight while on); 1 measures every request. Requests
   * outside the windows carry their route's estimate. Env: REQUEST_BUDGET_MEMORY_SAMPLE_RATIO.
   * @default 0.05
   */
  memorySampleRatio?: number;
  /**
   * Keep express's span per middleware, router and handler. The route template is recorded
   * either way. Env: REQUEST_BUDGET_EXPRESS_LAYER_SPANS.
   * @default false: they cost every request and add little beside the server span
   */
  expressLayerSpans?: boolean;
  /**
   * Keep @fastify/otel's span per hook (onRequest, preHandler, …) and per route handler. The
   * route template is recorded either way, and its one `request` span per request stays.
   * Env: REQUEST_BUDGET_FASTIFY_HOOK_SPANS.
   * @default false: they cost every request and add no cost figure
   */
  fastifyHookSpans?: boolean;
  /**
   * Keep instrumentation-koa's span per middleware and router layer. The route template is
   * recorded either way. Env: REQUEST_BUDGET_KOA_LAYER_SPANS.
   * @default false: they cost every request and add no cost figure
   */
  koaLayerSpans?: boolean;
  /** Further instrumentations to install beside request-budget's own. @default [] */
  extraInstrumentations?: Instrumentation[];
  /** Further span processors, run after cost attribution and before export. @default [] */
  spanProcessors?: SpanProcessor[];
  /**
   * Flush and shut down on SIGTERM, SIGINT and beforeExit.
   * @default true
   */
  shutdownOnExit?: boolean;
  /**
   * The longest client timeout, in ms, that still counts as one: an outgoing call bounded only
   * by a longer timeout (or abort-signal delay) counts in `cost.http_client.untimed`, since it
   * does not protect the request that made it. Env: REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS.
   * @default 30000
   */
  maxClientTimeoutMs?: number;
  /**
   * The budget file: a path to YAML or JSON, or its content as an object. A file that fails
   * validation is reported (file, line, field) and the app runs without budgets.
   * Env: REQUEST_BUDGET_FILE.
   * @default no budgets: costs are recorded, nothing is judged
   */
  budgets?: string | Record<string, unknown>;
  /**
   * Set span status ERROR on requests that exceed a `critical` rule.
   * Env: REQUEST_BUDGET_ERROR_ON_CRITICAL.
   * @default false
   */
  errorStatusOnCritical?: boolean;
  /**
   * Export a request that breached its budget even when the sampler dropped it: its root span
   * with the cost record, violations and breach events, under the ids already propagated.
   * Env: REQUEST_BUDGET_EXPORT_BREACHED.
   * @default true
   */
  exportBreachedTraces?: boolean;
  /**
   * What of a breached request the sampler dropped is exported: `'root'`, its root span alone
   * (queries and calls of unsampled requests are then never SDK spans: the cheap default), or
   * `'trace'`, its whole trace (every span of every unsampled request is recorded until its root
   * ends, as plain sampling never does), at most `wholeBreachedTracesPerMinute` a minute.
   * Env: REQUEST_BUDGET_EXPORT_BREACHED_DETAIL.
   * @default 'root'
   */
  breachedTraceDetail?: 'root' | 'trace';
  /**
   * With `breachedTraceDetail: 'trace'`: whole traces exported per minute at most; past it, a
   * breached request's root span alone. Env: REQUEST_BUDGET_EXPORT_BREACHED_TRACES_PER_MINUTE.
   * @default 60
   */
  wholeBreachedTracesPerMinute?: number;
  /**
   * Prometheus Alertmanager base URL; breaches become alerts there.
   * Env: REQUEST_BUDGET_ALERTMANAGER_URL.
   * @default none
   */
  alertmanagerUrl?: string;
  /**
   * Request headers for Alertmanager, e.g. `{ authorization: 'Bearer …' }` behind an
   * authenticating proxy. Env: REQUEST_BUDGET_ALERTMANAGER_HEADERS, in the
   * OTEL_EXPORTER_OTLP_HEADERS form (`key=value,key2=value2`, values URL-decoded).
   * @default none
   */
  alertmanagerHeaders?: Record<string, string>;
  /**
   * URL that receives each batch of breaches as a JSON POST. Env: REQUEST_BUDGET_WEBHOOK_URL.
   * @default none
   */
  webhookUrl?: string;
  /**
   * Request headers for the webhook, e.g. `{ authorization: 'Bearer …' }`.
   * Env: REQUEST_BUDGET_WEBHOOK_HEADERS, in the OTEL_EXPORTER_OTLP_HEADERS form
   * (`key=value,key2=value2`, values URL-decoded).
   * @default none
   */
  webhookHeaders?: Record<string, string>;
  /**
   * Template of a link to one trace in the tracing UI the traces go to, with `{traceId}` where
   * the trace id goes: `http://jaeger:16686/trace/{traceId}` (Jaeger) or
   * `http://zipkin:9411/zipkin/traces/{traceId}` (Zipkin). Each Alertmanager alert's
   * generatorURL links to the trace of its latest breach, and each breach event (log line,
   * webhook) gets it as `trace_url`. Env: REQUEST_BUDGET_TRACE_URL.
   * @default none: alerts carry the trace id only
   */
  traceUrl?: string;
  /**
   * Write one JSON line per breach on stderr. Env: REQUEST_BUDGET_ALERT_LOG.
   * @default true
   */
  alertLog?: boolean;
  /**
   * Where cost metrics go. Env: OTEL_METRICS_EXPORTER (comma-separated: prometheus, otlp,
   * console, none).
   * @default `['otlp']` when an OTLP endpoint is set in the environment, otherwise none
   */
  metricExporters?: MetricExporterOptionName[];
  /**
   * Also let the instrumentations record their own metrics (HTTP server duration, pg connection
   * gauges…) through the same exporters. Env: REQUEST_BUDGET_INSTRUMENTATION_METRICS.
   * @default false: they cost per request, and the cost metrics cover the budget dashboards
   */
  instrumentationMetrics?: boolean;
  /** Prometheus scrape endpoint host. Env: OTEL_EXPORTER_PROMETHEUS_HOST. @default 'localhost' */
  prometheusHost?: string;
  /** Prometheus scrape endpoint port (0 picks a free one). Env: OTEL_EXPORTER_PROMETHEUS_PORT. @default 9464 */
  prometheusPort?: number;
  /**
   * Re-send firing Alertmanager alerts this often while breaches go on.
   * Env: REQUEST_BUDGET_ALERT_RESEND_MS.
   * @default 60000
   */
  alertResendIntervalMs?: number;
  /**
   * Resolve an Alertmanager alert after this long without a breach.
   * Env: REQUEST_BUDGET_ALERT_RESOLVE_MS.
   * @default 300000
   */
  alertResolveAfterMs?: number;
}
