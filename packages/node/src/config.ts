/**
 * Resolves request-budget's configuration once, at start: explicit option, then environment
 * variable, then default. A bad environment value is reported in one line naming the variable,
 * the value and what is used instead; it never throws into the app.
 */
import { DiagLogLevel } from '@opentelemetry/api';
import { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler, type Sampler } from '@opentelemetry/sdk-trace';
import { parseHeaderList, traceUrlTemplateProblem } from '@request-budget/core';
import { DEFAULT_MAX_CLIENT_TIMEOUT_MS } from './http-client-timeouts';
import { INSTRUMENTATION_NAMES, type InstrumentationName } from './instrumentations';
import { MEMORY_SAMPLING_DEFAULTS } from './memory-windows';
import type { OtlpProtocol, RequestBudgetOptions, TraceExporterName } from './types';

/** The environment as read by {@link resolveConfig}. */
export type Environment = Readonly<Record<string, string | undefined>>;

/** Receives one line per problem found in the configuration. */
export type ProblemReporter = (message: string) => void;

export interface ResolvedConfig {
  /** OTEL_SDK_DISABLED=true: start() does nothing at all. */
  readonly disabled: boolean;
  /** OTEL_LOG_LEVEL: OpenTelemetry's own `diag` lines on the console at this level; none when unset. */
  readonly logLevel: DiagLogLevel | undefined;
  readonly serviceName: string | undefined;
  /** Exporters to build; empty when traces are not exported. */
  readonly traceExporters: readonly Exclude<TraceExporterName, 'none'>[];
  readonly otlpProtocol: OtlpProtocol;
  readonly otlpEndpoint: string;
  readonly zipkinEndpoint: string;
  /** OTEL_EXPORTER_ZIPKIN_TIMEOUT: longest wait for Zipkin to answer one batch. */
  readonly zipkinTimeoutMs: number;
  readonly summary: boolean;
  /** The summary is on only because nothing at all was configured (start() says so once). */
  readonly summaryByDefault: boolean;
  readonly sampler: Sampler;
  readonly instrumentations: readonly InstrumentationName[];
  /** Attribute each request's own allocations (cost.memory.*). */
  readonly memoryAttribution: boolean;
  /** Share of the time requests are measured for it (memory-windows.ts). */
  readonly memorySampleRatio: number;
  /** Keep express's per-layer spans. */
  readonly expressLayerSpans: boolean;
  /** Keep @fastify/otel's per-hook and per-handler spans. */
  readonly fastifyHookSpans: boolean;
  /** Keep instrumentation-koa's per-layer spans. */
  readonly koaLayerSpans: boolean;
  readonly shutdownOnExit: boolean;
  /** An outgoing call whose timeout is longer than this (ms) counts as untimed. */
  readonly maxClientTimeoutMs: number;
  /** Batch span processor settings (OTEL_BSP_*); unset ones keep the SDK defaults. */
  readonly batch: BatchSettings;
  /**
   * OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT (or OTEL_ATTRIBUTE_COUNT_LIMIT) as the user set it; undefined
   * when unset. start() raises it by the room the cost record needs, so the limit cannot drop it.
   */
  readonly spanAttributeCountLimit: number | undefined;
  /** Budget file path or content; undefined when none is configured. */
  readonly budgets: string | Record<string, unknown> | undefined;
  readonly errorStatusOnCritical: boolean;
  readonly exportBreachedTraces: boolean;
  /** What of a breached, unsampled request is exported: its root span, or its whole trace. */
  readonly breachedTraceDetail: BreachedTraceDetail;
  /** Whole traces exported per minute at most ('trace' detail); past it, the root span alone. */
  readonly wholeBreachedTracesPerMinute: number;
  readonly alerts: AlertSettings;
  readonly metrics: MetricSettings;
}

export type MetricExporterName = 'prometheus' | 'otlp' | 'console';

export type BreachedTraceDetail = 'root' | 'trace';
const BREACHED_TRACE_DETAILS: readonly BreachedTraceDetail[] = ['root', 'trace'];

export interface MetricSettings {
  /** Empty when metrics are not exported (the default unless configured). */
  readonly exporters: readonly MetricExporterName[];
  readonly prometheusHost: string;
  readonly prometheusPort: number;
  readonly otlpProtocol: OtlpProtocol;
  readonly otlpEndpoint: string;
  readonly exportIntervalMs: number;
  /** Share the provider with the instrumentations, for their own metrics. */
  readonly instrumentationMetrics: boolean;
}

export interface AlertSettings {
  readonly alertmanagerUrl: string | undefined;
  readonly alertmanagerHeaders: Readonly<Record<string, string>> | undefined;
  readonly webhookUrl: string | undefined;
  readonly webhookHeaders: Readonly<Record<string, string>> | undefined;
  /** Template of a link to one trace, with `{traceId}` in it. */
  readonly traceUrl: string | undefined;
  readonly log: boolean;
  readonly resendIntervalMs: number;
  readonly resolveAfterMs: number;
}

export interface BatchSettings {
  readonly scheduledDelayMillis?: number;
  readonly maxQueueSize?: number;
  readonly maxExportBatchSize?: number;
  readonly exportTimeoutMillis?: number;
}

const TRACE_EXPORTERS: readonly TraceExporterName[] = ['otlp', 'zipkin', 'console', 'none'];
const METRIC_EXPORTERS = ['prometheus', 'otlp', 'console', 'none'] as const;
const OTLP_PROTOCOLS: readonly OtlpProtocol[] = ['http/protobuf', 'http/json', 'grpc'];
/** OTEL_LOG_LEVEL's values, as the OpenTelemetry JS SDKs read them. */
const LOG_LEVELS = {
  none: DiagLogLevel.NONE,
  error: DiagLogLevel.ERROR,
  warn: DiagLogLevel.WARN,
  info: DiagLogLevel.INFO,
  debug: DiagLogLevel.DEBUG,
  verbose: DiagLogLevel.VERBOSE,
  all: DiagLogLevel.ALL,
} as const;
const SAMPLERS = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'] as const;

/** Every default of the configuration in one place. */
export const DEFAULTS = Object.freeze({
  otlpProtocol: 'http/protobuf',
  otlpHttpEndpoint: 'http://localhost:4318/v1/traces',
  otlpGrpcEndpoint: 'http://localhost:4317',
  zipkinEndpoint: 'http://localhost:9411/api/v2/spans',
  zipkinTimeoutMs: 10_000,
  sampler: 'parentbased_always_on',
  samplerRatio: 1,
  shutdownOnExit: true,
  errorStatusOnCritical: false,
  exportBreachedTraces: true,
  breachedTraceDetail: 'root',
  wholeBreachedTracesPerMinute: 60,
  alertLog: true,
  alertResendIntervalMs: 60_000,
  alertResolveAfterMs: 300_000,
  prometheusHost: 'localhost',
  prometheusPort: 9464,
  otlpHttpMetricsEndpoint: 'http://localhost:4318/v1/metrics',
  metricExportIntervalMs: 60_000,
  maxClientTimeoutMs: DEFAULT_MAX_CLIENT_TIMEOUT_MS,
});

export function resolveConfig(options: RequestBudgetOptions, env: Environment, report: ProblemReporter): ResolvedConfig {
  const read = new EnvReader(env, report);
  const exportersFromEnv = read.list('OTEL_TRACES_EXPORTER', TRACE_EXPORTERS, 'default');
  const otlpEndpointInEnv = read.present('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') || read.present('OTEL_EXPORTER_OTLP_ENDPOINT');
  // "No exporter configured at all" means neither a list of exporters nor an OTLP endpoint:
  // then the developer gets the summary on stderr rather than failed exports to localhost.
  const nothingConfigured = options.traceExporters === undefined && exportersFromEnv === undefined && !otlpEndpointInEnv;
  const requested = options.traceExporters ?? exportersFromEnv ?? (otlpEndpointInEnv ? ['otlp' as const] : []);
  const traceExporters = requested.includes('none')
    ? []
    : [...new Set(requested.filter((name): name is Exclude<TraceExporterName, 'none'> => name !== 'none'))];
  const otlpProtocol =
    options.otlpProtocol ??
    read.oneOf('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', OTLP_PROTOCOLS) ??
    read.oneOf('OTEL_EXPORTER_OTLP_PROTOCOL', OTLP_PROTOCOLS) ??
    DEFAULTS.otlpProtocol;
  const summary = options.summary ?? read.boolean('REQUEST_BUDGET_SUMMARY');

  return {
    disabled: read.boolean('OTEL_SDK_DISABLED') ?? false,
    logLevel: logLevelFromEnv(read),
    serviceName: options.serviceName ?? (env.OTEL_SERVICE_NAME || undefined),
    traceExporters,
    otlpProtocol,
    otlpEndpoint: options.otlpEndpoint ?? otlpEndpointFromEnv(read, otlpProtocol),
    zipkinEndpoint: options.zipkinEndpoint ?? read.url('OTEL_EXPORTER_ZIPKIN_ENDPOINT') ?? DEFAULTS.zipkinEndpoint,
    zipkinTimeoutMs: read.number('OTEL_EXPORTER_ZIPKIN_TIMEOUT', 1, 600_000) ?? DEFAULTS.zipkinTimeoutMs,
    summary: summary ?? nothingConfigured,
    summaryByDefault: summary === undefined && nothingConfigured,
    sampler: options.sampler ?? samplerFromEnv(read),
    instrumentations: options.instrumentations ?? instrumentationsFromEnv(read),
    memoryAttribution: options.memoryAttribution ?? read.boolean('REQUEST_BUDGET_MEMORY_ATTRIBUTION') ?? true,
    memorySampleRatio:
      numberOption(options.memorySampleRatio, 'memorySampleRatio', 0.001, 1, read) ??
      read.number('REQUEST_BUDGET_MEMORY_SAMPLE_RATIO', 0.001, 1) ??
      MEMORY_SAMPLING_DEFAULTS.ratio,
    expressLayerSpans: options.expressLayerSpans ?? read.boolean('REQUEST_BUDGET_EXPRESS_LAYER_SPANS') ?? false,
    fastifyHookSpans: options.fastifyHookSpans ?? read.boolean('REQUEST_BUDGET_FASTIFY_HOOK_SPANS') ?? false,
    koaLayerSpans: options.koaLayerSpans ?? read.boolean('REQUEST_BUDGET_KOA_LAYER_SPANS') ?? false,
    shutdownOnExit: options.shutdownOnExit ?? DEFAULTS.shutdownOnExit,
    maxClientTimeoutMs: options.maxClientTimeoutMs ?? read.number('REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS', 1, 2_147_483_647) ?? DEFAULTS.maxClientTimeoutMs,
    spanAttributeCountLimit: read.number('OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT', 0, 1_000_000) ?? read.number('OTEL_ATTRIBUTE_COUNT_LIMIT', 0, 1_000_000),
    batch: {
      scheduledDelayMillis: read.number('OTEL_BSP_SCHEDULE_DELAY', 0, 3_600_000),
      maxQueueSize: read.number('OTEL_BSP_MAX_QUEUE_SIZE', 1, 10_000_000),
      maxExportBatchSize: read.number('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 1, 10_000_000),
      exportTimeoutMillis: read.number('OTEL_BSP_EXPORT_TIMEOUT', 1, 3_600_000),
    },
    budgets: options.budgets ?? (env.REQUEST_BUDGET_FILE?.trim() || undefined),
    errorStatusOnCritical: options.errorStatusOnCritical ?? read.boolean('REQUEST_BUDGET_ERROR_ON_CRITICAL') ?? DEFAULTS.errorStatusOnCritical,
    exportBreachedTraces: options.exportBreachedTraces ?? read.boolean('REQUEST_BUDGET_EXPORT_BREACHED') ?? DEFAULTS.exportBreachedTraces,
    breachedTraceDetail:
      options.breachedTraceDetail ?? read.oneOf('REQUEST_BUDGET_EXPORT_BREACHED_DETAIL', BREACHED_TRACE_DETAILS) ?? DEFAULTS.breachedTraceDetail,
    wholeBreachedTracesPerMinute:
      numberOption(options.wholeBreachedTracesPerMinute, 'wholeBreachedTracesPerMinute', 0, 1_000_000, read) ??
      read.number('REQUEST_BUDGET_EXPORT_BREACHED_TRACES_PER_MINUTE', 0, 1_000_000) ??
      DEFAULTS.wholeBreachedTracesPerMinute,
    alerts: alertSettings(options, read),
    metrics: metricSettings(options, read, otlpEndpointInEnv),
  };
}

/** A number option within bounds; anything else is reported and ignored (a NaN would disable a bound). */
function numberOption(value: number | undefined, name: string, min: number, max: number, read: EnvReader): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number' && Number.isFinite(value) && value >= min && value <= max) return value;
  read.report(`the ${name} option ${String(value)} is not a number from ${min} to ${max}; ignoring it`);
  return undefined;
}

function metricSettings(options: RequestBudgetOptions, read: EnvReader, otlpEndpointInEnv: boolean): MetricSettings {
  const fromEnv = read.list('OTEL_METRICS_EXPORTER', METRIC_EXPORTERS, 'default');
  // Like traces: nothing configured means no export (NodeSDK would push OTLP to localhost);
  // an OTLP endpoint alone means OTLP.
  const requested = options.metricExporters ?? fromEnv ?? (otlpEndpointInEnv ? ['otlp' as const] : []);
  const exporters = requested.includes('none') ? [] : [...new Set(requested.filter((name): name is MetricExporterName => name !== 'none'))];
  const otlpProtocol =
    read.oneOf('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL', OTLP_PROTOCOLS) ?? read.oneOf('OTEL_EXPORTER_OTLP_PROTOCOL', OTLP_PROTOCOLS) ?? DEFAULTS.otlpProtocol;
  const base = read.url('OTEL_EXPORTER_OTLP_ENDPOINT');
  const otlpEndpoint =
    read.url('OTEL_EXPORTER_OTLP_METRICS_ENDPOINT') ??
    (otlpProtocol === 'grpc'
      ? (base ?? DEFAULTS.otlpGrpcEndpoint)
      : base === undefined
        ? DEFAULTS.otlpHttpMetricsEndpoint
        : `${base.replace(/\/+$/, '')}/v1/metrics`);
  return {
    exporters,
    prometheusHost: options.prometheusHost ?? read.text('OTEL_EXPORTER_PROMETHEUS_HOST') ?? DEFAULTS.prometheusHost,
    prometheusPort: options.prometheusPort ?? read.number('OTEL_EXPORTER_PROMETHEUS_PORT', 0, 65535) ?? DEFAULTS.prometheusPort,
    otlpProtocol,
    otlpEndpoint,
    exportIntervalMs: read.number('OTEL_METRIC_EXPORT_INTERVAL', 100, 86_400_000) ?? DEFAULTS.metricExportIntervalMs,
    instrumentationMetrics: options.instrumentationMetrics ?? read.boolean('REQUEST_BUDGET_INSTRUMENTATION_METRICS') ?? false,
  };
}

function alertSettings(options: RequestBudgetOptions, read: EnvReader): AlertSettings {
  const resendIntervalMs = options.alertResendIntervalMs ?? read.number('REQUEST_BUDGET_ALERT_RESEND_MS', 100, 86_400_000) ?? DEFAULTS.alertResendIntervalMs;
  let resolveAfterMs = options.alertResolveAfterMs ?? read.number('REQUEST_BUDGET_ALERT_RESOLVE_MS', 100, 86_400_000) ?? DEFAULTS.alertResolveAfterMs;
  // A firing alert carries endsAt = now + resolveAfterMs; re-sent less often, it would flap.
  if (resolveAfterMs <= resendIntervalMs) {
    read.report(
      `alert resolve period (${resolveAfterMs} ms) must be longer than the resend interval (${resendIntervalMs} ms); using ${resendIntervalMs * 3} ms`,
    );
    resolveAfterMs = resendIntervalMs * 3;
  }
  return {
    alertmanagerUrl: options.alertmanagerUrl ?? read.url('REQUEST_BUDGET_ALERTMANAGER_URL'),
    alertmanagerHeaders: options.alertmanagerHeaders ?? read.headers('REQUEST_BUDGET_ALERTMANAGER_HEADERS'),
    webhookUrl: options.webhookUrl ?? read.url('REQUEST_BUDGET_WEBHOOK_URL'),
    webhookHeaders: options.webhookHeaders ?? read.headers('REQUEST_BUDGET_WEBHOOK_HEADERS'),
    traceUrl: traceUrlTemplate(options.traceUrl, read),
    log: options.alertLog ?? read.boolean('REQUEST_BUDGET_ALERT_LOG') ?? DEFAULTS.alertLog,
    resendIntervalMs,
    resolveAfterMs,
  };
}

/** An option's template is a programming error, said like the variable's. */
function traceUrlTemplate(option: string | undefined, read: EnvReader): string | undefined {
  if (option === undefined) return read.traceUrl('REQUEST_BUDGET_TRACE_URL');
  const problem = traceUrlTemplateProblem(option);
  if (problem === undefined) return option;
  read.report(`the traceUrl option ${JSON.stringify(option)} ${problem}; alerts go without a trace link`);
  return undefined;
}

function logLevelFromEnv(read: EnvReader): DiagLogLevel | undefined {
  const raw = read.text('OTEL_LOG_LEVEL');
  if (raw === undefined) return undefined;
  const level = LOG_LEVELS[raw.toLowerCase() as keyof typeof LOG_LEVELS] as DiagLogLevel | undefined;
  if (level !== undefined) return level;
  // The SDK's own reading of a bad value (NodeSDK, auto-instrumentations-node) is info.
  read.report(`OTEL_LOG_LEVEL=${JSON.stringify(raw)} is not one of ${Object.keys(LOG_LEVELS).join(', ')}; using info, as the OpenTelemetry SDK does`);
  return DiagLogLevel.INFO;
}

function otlpEndpointFromEnv(read: EnvReader, protocol: OtlpProtocol): string {
  const tracesEndpoint = read.url('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  if (tracesEndpoint !== undefined) return tracesEndpoint;
  const base = read.url('OTEL_EXPORTER_OTLP_ENDPOINT');
  if (protocol === 'grpc') return base ?? DEFAULTS.otlpGrpcEndpoint;
  return base === undefined ? DEFAULTS.otlpHttpEndpoint : `${base.replace(/\/+$/, '')}/v1/traces`;
}

function samplerFromEnv(read: EnvReader): Sampler {
  const name = read.oneOf('OTEL_TRACES_SAMPLER', SAMPLERS) ?? DEFAULTS.sampler;
  const ratio = () => read.number('OTEL_TRACES_SAMPLER_ARG', 0, 1) ?? DEFAULTS.samplerRatio;
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

function instrumentationsFromEnv(read: EnvReader): InstrumentationName[] {
  // Naming only unknown instrumentations enables none of them, as the user asked for those only.
  const enabled = read.list('OTEL_NODE_ENABLED_INSTRUMENTATIONS', INSTRUMENTATION_NAMES, 'empty') ?? [...INSTRUMENTATION_NAMES];
  const disabled = read.list('OTEL_NODE_DISABLED_INSTRUMENTATIONS', INSTRUMENTATION_NAMES, 'empty') ?? [];
  return enabled.filter((name) => !disabled.includes(name));
}

/** Reads typed values from the environment, reporting each bad one. Empty counts as unset. */
class EnvReader {
  private readonly reported = new Set<string>();

  constructor(
    private readonly env: Environment,
    private readonly reportTo: ProblemReporter,
  ) {}

  /** Reports a problem; the same line twice (a variable read for traces and metrics) once. */
  report(message: string): void {
    if (this.reported.has(message)) return;
    this.reported.add(message);
    this.reportTo(message);
  }

  boolean(name: string): boolean | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return undefined;
    // As the OpenTelemetry spec reads booleans: true or false, in any case; nothing else.
    const value = raw.toLowerCase();
    if (value === 'true') return true;
    if (value === 'false') return false;
    this.report(`${name}=${JSON.stringify(raw)} is not a boolean (expected true or false); ignoring it`);
    return undefined;
  }

  number(name: string, min: number, max: number): number | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return undefined;
    const value = Number(raw);
    if (Number.isFinite(value) && value >= min && value <= max) return value;
    this.report(`${name}=${JSON.stringify(raw)} is not a number from ${min} to ${max}; ignoring it`);
    return undefined;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return undefined;
    const value = raw.toLowerCase() as T;
    if (allowed.includes(value)) return value;
    this.report(`${name}=${JSON.stringify(raw)} is not one of ${allowed.join(', ')}; ignoring it`);
    return undefined;
  }

  /**
   * A comma-separated list; unknown entries are reported and left out. When every entry is
   * unknown, `whenAllUnknown` says whether that means the default (undefined) or an empty list.
   */
  list<T extends string>(name: string, allowed: readonly T[], whenAllUnknown: 'default' | 'empty'): T[] | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return undefined;
    const entries = raw
      .split(',')
      .map((entry) => entry.trim().toLowerCase())
      .filter((entry) => entry.length > 0);
    const unknown = entries.filter((entry) => !allowed.includes(entry as T));
    if (unknown.length > 0) {
      this.report(
        `${name}=${JSON.stringify(raw)}: unknown ${unknown.map((u) => JSON.stringify(u)).join(', ')} (expected ${allowed.join(', ')}); ignoring ${unknown.length === 1 ? 'it' : 'them'}`,
      );
    }
    const known = entries.filter((entry): entry is T => allowed.includes(entry as T));
    return known.length > 0 || unknown.length === 0 || whenAllUnknown === 'empty' ? known : undefined;
  }

  /** A free-text value (trimmed), or undefined when unset. */
  text(name: string): string | undefined {
    return this.raw(name);
  }

  /** Whether the variable is set to something other than blanks. */
  present(name: string): boolean {
    return this.raw(name) !== undefined;
  }

  url(name: string): string | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return undefined;
    try {
      const url = new URL(raw);
      if (url.protocol === 'http:' || url.protocol === 'https:') return raw;
    } catch {
      // reported below
    }
    this.report(`${name}=${JSON.stringify(raw)} is not an http(s) URL; ignoring it`);
    return undefined;
  }

  /**
   * Headers in the OTEL_EXPORTER_OTLP_HEADERS form (`key=value,…`, values URL-decoded). They
   * usually hold secrets: a bad entry is named by its position, its text never printed, and
   * left out; the good ones are kept.
   */
  headers(name: string): Record<string, string> | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return undefined;
    const { headers, problems } = parseHeaderList(raw);
    for (const problem of problems) this.report(`${name}: ${problem} (the value is not shown: it may hold a secret); ignoring that entry`);
    return Object.keys(headers).length > 0 ? headers : undefined;
  }

  /** A link template with `{traceId}` in it (see @request-budget/core trace-link.ts). */
  traceUrl(name: string): string | undefined {
    const raw = this.raw(name);
    if (raw === undefined) return undefined;
    const problem = traceUrlTemplateProblem(raw);
    if (problem === undefined) return raw;
    this.report(`${name}=${JSON.stringify(raw)} ${problem} (e.g. http://jaeger:16686/trace/{traceId}); ignoring it`);
    return undefined;
  }

  private raw(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  }
}
