/**
 * The collector's configuration: command-line flags, REQUEST_BUDGET_COLLECTOR_* environment
 * variables and a YAML or JSON file (`--config`), in that order of precedence over the defaults.
 * Every option is described once, in OPTIONS: its flag, variable, file key, type, default and help
 * text (`--help` is generated from it). Every problem is reported, all at once, naming where the
 * value came from: `--max-traces: expected a positive integer, got "lots"`,
 * `REQUEST_BUDGET_COLLECTOR_LISTEN: …`, `collector.yaml: graceMs: …`.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { HEADER_NAME, HEADER_VALUE, parseByteSize, parseHeaderList, traceUrlTemplateProblem } from '@request-budget/core';
import { parse as parseYaml } from 'yaml';

export interface CollectorConfig {
  readonly listenHost: string;
  readonly listenPort: number;
  /** Where OTLP/gRPC is received; undefined when turned off (`--grpc-listen off`). */
  readonly grpcListen: { readonly host: string; readonly port: number } | undefined;
  readonly budgetsPath: string | undefined;
  /** Full OTLP/HTTP traces URL (…/v1/traces). */
  readonly otlpEndpoint: string | undefined;
  readonly otlpHeaders: Readonly<Record<string, string>>;
  readonly zipkinEndpoint: string | undefined;
  readonly alertmanagerUrl: string | undefined;
  readonly alertmanagerHeaders: Readonly<Record<string, string>>;
  readonly webhookUrl: string | undefined;
  readonly webhookHeaders: Readonly<Record<string, string>>;
  /** Template of a link to one trace, with `{traceId}` in it. */
  readonly traceUrl: string | undefined;
  readonly alertLog: boolean;
  readonly alertResendIntervalMs: number;
  readonly alertResolveAfterMs: number;
  readonly errorOnCritical: boolean;
  readonly authToken: string | undefined;
  readonly maxBodyBytes: number;
  /** Request bodies received and decoded at once; beyond it, 503 before the body is read. */
  readonly maxConcurrentRequests: number;
  /** A request's headers must have arrived this long after it began (else 408, connection destroyed). */
  readonly headersTimeoutMs: number;
  /** A whole request, headers and body, must have arrived within this (else 408, connection destroyed). */
  readonly requestTimeoutMs: number;
  /** A connection silent this long while a request is awaited, received or answered is destroyed. */
  readonly idleTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  readonly keepAliveTimeoutMs: number;
  readonly graceMs: number;
  readonly maxTraceWaitMs: number;
  readonly maxTraces: number;
  readonly maxSpansPerTrace: number;
  readonly maxQueueSpans: number;
  /** Estimated bytes of the spans held (traces and queues); from 80 % of it, requests get 503. */
  readonly memoryLimitBytes: number;
  readonly maxBatchSpans: number;
  /** Requests under way at once to each downstream. */
  readonly forwardConcurrency: number;
  readonly forwardTimeoutMs: number;
  readonly retryInitialBackoffMs: number;
  readonly retryMaxBackoffMs: number;
  readonly retryMaxElapsedMs: number;
  readonly shutdownTimeoutMs: number;
  /** Where batches not delivered by the shutdown deadline are kept for the next start; none: dropped. */
  readonly spoolDir: string | undefined;
}

type ValueType = 'listen' | 'listenOrOff' | 'path' | 'url' | 'traceUrl' | 'text' | 'headers' | 'boolean' | 'count' | 'duration' | 'size';

interface OptionDeclaration {
  /** The file key (camelCase); the flag is its kebab-case form unless `flag` says otherwise. */
  readonly key: keyof CollectorConfig | 'listen' | 'config';
  /** A shorter flag than the key's kebab-case form, without the dashes. */
  readonly flag?: string;
  readonly type: ValueType;
  readonly arg: string;
  readonly help: string;
  /** The value when none is given, in the option's own form (`listen`: HOST:PORT text); none when absent. */
  readonly default?: unknown;
  /** What --help says of an absent default, when "none" alone would not say enough. */
  readonly noneText?: string;
  /** Smallest allowed value for counts and durations. */
  readonly min?: number;
}

/** An option as declared, with the default as --help states it. */
export interface OptionSpec extends OptionDeclaration {
  readonly defaultText: string;
}

/**
 * Every option, declared once, in --help order: its flag (`--` + the key in kebab-case, or
 * `flag`), environment variable (derived from the flag), type, default and help text. Parsing,
 * defaults and --help all come from here.
 */
const DECLARED: readonly OptionDeclaration[] = [
  {
    key: 'config',
    type: 'path',
    arg: 'FILE',
    help: 'YAML or JSON file with any of these options (keys in camelCase, e.g. maxTraces); paths in it are relative to it',
  },
  {
    key: 'listen',
    type: 'listen',
    arg: 'HOST:PORT',
    default: '127.0.0.1:4318',
    help: 'where to receive OTLP/HTTP (POST /v1/traces) and serve /metrics, /healthz, /readyz; port 0 picks a free one',
  },
  {
    key: 'grpcListen',
    type: 'listenOrOff',
    arg: 'HOST:PORT|off',
    default: '127.0.0.1:4317',
    help: 'where to receive OTLP/gRPC (TraceService/Export, gzip or not); off turns it off; port 0 picks a free one',
  },
  {
    key: 'budgetsPath',
    flag: 'budgets',
    type: 'path',
    arg: 'FILE',
    noneText: 'none (costs derived, nothing judged)',
    help: 'the budget file (YAML or JSON), as for @request-budget/node',
  },
  {
    key: 'otlpEndpoint',
    type: 'url',
    arg: 'URL',
    help: 'forward OTLP/HTTP protobuf here, e.g. http://jaeger:4318 (/v1/traces is appended unless the path ends with it)',
  },
  {
    key: 'otlpHeaders',
    type: 'headers',
    arg: 'K=V,…',
    default: {},
    help: 'extra headers for the OTLP downstream, e.g. authorization=Bearer%20xyz (values URL-decoded)',
  },
  { key: 'zipkinEndpoint', type: 'url', arg: 'URL', help: 'forward Zipkin v2 JSON here, e.g. http://zipkin:9411/api/v2/spans' },
  { key: 'alertmanagerUrl', type: 'url', arg: 'URL', help: 'send breaches to this Alertmanager (POST /api/v2/alerts), e.g. http://alertmanager:9093' },
  {
    key: 'alertmanagerHeaders',
    type: 'headers',
    arg: 'K=V,…',
    default: {},
    help: 'extra headers for Alertmanager, e.g. authorization=Basic%20dXNlcjpwdw%3D%3D behind an authenticating proxy (values URL-decoded)',
  },
  { key: 'webhookUrl', type: 'url', arg: 'URL', help: 'POST breaches to this webhook as {"breaches":[…]}' },
  {
    key: 'webhookHeaders',
    type: 'headers',
    arg: 'K=V,…',
    default: {},
    help: 'extra headers for the webhook, e.g. authorization=Bearer%20xyz (values URL-decoded)',
  },
  {
    key: 'traceUrl',
    type: 'traceUrl',
    arg: 'TEMPLATE',
    noneText: 'none (alerts carry the trace id only)',
    help: "link to a breach's trace in your tracing UI, {traceId} replaced: e.g. http://jaeger:16686/trace/{traceId} or http://zipkin:9411/zipkin/traces/{traceId}; each Alertmanager alert's generatorURL (the trace of its latest breach), and trace_url in webhook and log breach events",
  },
  { key: 'alertLog', type: 'boolean', arg: 'true|false', default: true, help: 'one JSON line per breach on stderr' },
  {
    key: 'alertResendIntervalMs',
    flag: 'alert-resend-interval',
    type: 'duration',
    arg: 'DURATION',
    default: 60_000,
    min: 100,
    help: 'how often firing Alertmanager alerts are re-sent',
  },
  {
    key: 'alertResolveAfterMs',
    flag: 'alert-resolve-after',
    type: 'duration',
    arg: 'DURATION',
    default: 300_000,
    min: 100,
    help: 'quiet period after which an Alertmanager alert is resolved (longer than the resend interval)',
  },
  { key: 'errorOnCritical', type: 'boolean', arg: 'true|false', default: false, help: 'a critical breach also sets the root span status to ERROR' },
  {
    key: 'authToken',
    type: 'text',
    arg: 'TOKEN',
    noneText: 'none (no auth)',
    help: 'require "Authorization: Bearer TOKEN" on /v1/traces and as gRPC authorization metadata (prefer the environment variable to the flag)',
  },
  {
    key: 'maxBodyBytes',
    flag: 'max-body-size',
    type: 'size',
    arg: 'SIZE',
    default: 10 * 1024 * 1024,
    help: 'largest request body, compressed or inflated (larger: 413)',
  },
  {
    key: 'maxConcurrentRequests',
    type: 'count',
    arg: 'N',
    default: 32,
    min: 1,
    help: 'request bodies received and decoded at once (with --max-body-size, bounds their memory); a request beyond it gets 503 with Retry-After: 1 before its body is read, unless a body has stalled (no byte for a quarter of --idle-timeout): that connection is closed and its slot taken',
  },
  {
    key: 'headersTimeoutMs',
    flag: 'headers-timeout',
    type: 'duration',
    arg: 'DURATION',
    default: 10_000,
    min: 100,
    help: "longest wait for a request's headers (slow senders: 408, connection closed)",
  },
  {
    key: 'requestTimeoutMs',
    flag: 'request-timeout',
    type: 'duration',
    arg: 'DURATION',
    default: 60_000,
    min: 100,
    help: 'longest wait for a whole request, headers and body (slow senders: 408, connection closed); at least --headers-timeout',
  },
  {
    key: 'idleTimeoutMs',
    flag: 'idle-timeout',
    type: 'duration',
    arg: 'DURATION',
    default: 10_000,
    min: 100,
    help: 'a connection silent this long — before its request, in the middle of a body, or not reading its answer — is closed',
  },
  {
    key: 'keepAliveTimeoutMs',
    flag: 'keep-alive-timeout',
    type: 'duration',
    arg: 'DURATION',
    default: 15_000,
    min: 100,
    help: 'an idle keep-alive connection between requests is closed after this',
  },
  {
    key: 'graceMs',
    flag: 'grace-period',
    type: 'duration',
    arg: 'DURATION',
    default: 2000,
    min: 0,
    help: "wait after a trace's root span arrives for the rest of its spans",
  },
  {
    key: 'maxTraceWaitMs',
    flag: 'max-trace-wait',
    type: 'duration',
    arg: 'DURATION',
    default: 30_000,
    min: 0,
    help: 'longest a trace is held from its first span, root or not',
  },
  { key: 'maxTraces', type: 'count', arg: 'N', default: 50_000, min: 1, help: 'traces held at once; a new one beyond this flushes (processes) the oldest' },
  { key: 'maxSpansPerTrace', type: 'count', arg: 'N', default: 2000, min: 1, help: 'spans held per trace; a trace reaching it is processed at once' },
  {
    key: 'maxQueueSpans',
    type: 'count',
    arg: 'N',
    default: 500_000,
    min: 1,
    help: 'spans held in all (in traces and waiting for a downstream); beyond it senders get 503 with Retry-After',
  },
  // Memory: held spans bounded in bytes as well as in spans.
  {
    key: 'memoryLimitBytes',
    flag: 'memory-limit',
    type: 'size',
    arg: 'SIZE',
    default: 256 * 1024 * 1024,
    help: "estimated memory of the spans held (in traces and waiting for a downstream); from 80 % of it senders get 503 with Retry-After before their body is read, as otelcol's memory_limiter does; the rest absorbs requests already under way. Set it well below the Node heap (--max-old-space-size)",
  },
  { key: 'maxBatchSpans', type: 'count', arg: 'N', default: 512, min: 1, help: 'most spans in one request to a downstream' },
  {
    key: 'forwardConcurrency',
    type: 'count',
    arg: 'N',
    default: 4,
    min: 1,
    help: 'requests under way at once to each downstream (batches are delivered in no particular order); a slow downstream holds only its own',
  },
  {
    key: 'forwardTimeoutMs',
    flag: 'forward-timeout',
    type: 'duration',
    arg: 'DURATION',
    default: 10_000,
    min: 1,
    help: 'timeout of one request to a downstream',
  },
  {
    key: 'retryInitialBackoffMs',
    flag: 'retry-initial-backoff',
    type: 'duration',
    arg: 'DURATION',
    default: 500,
    min: 1,
    help: 'first retry delay after a failed send (doubles each time, ±20 %) unless the downstream sent Retry-After',
  },
  { key: 'retryMaxBackoffMs', flag: 'retry-max-backoff', type: 'duration', arg: 'DURATION', default: 30_000, min: 1, help: 'longest retry delay' },
  {
    key: 'retryMaxElapsedMs',
    flag: 'retry-max-elapsed',
    type: 'duration',
    arg: 'DURATION',
    default: 300_000,
    min: 1,
    help: 'give up on a batch (drop it, counted and logged) after retrying this long',
  },
  {
    key: 'shutdownTimeoutMs',
    flag: 'shutdown-timeout',
    type: 'duration',
    arg: 'DURATION',
    default: 10_000,
    min: 0,
    help: 'on SIGTERM/SIGINT, how long to deliver what is held before exiting',
  },
  {
    key: 'spoolDir',
    type: 'path',
    arg: 'DIR',
    noneText: 'none (what is not delivered by --shutdown-timeout is dropped, counted and logged)',
    help: 'at the shutdown deadline, write every batch not yet acknowledged by its downstream here (one fsynced file per batch), and send them at the next start; a file is deleted once delivered',
  },
];

/** Every option with its default as --help states it. */
export const OPTIONS: readonly OptionSpec[] = DECLARED.map((option) => ({ ...option, defaultText: describeDefault(option) }));

export const ENV_PREFIX = 'REQUEST_BUDGET_COLLECTOR_';
const MIN_MEMORY_LIMIT_BYTES = 1024 * 1024;

const kebab = (key: string) => key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
/** The flag of an option: its own when it has one, else its key in kebab-case. */
export const flagOf = (spec: OptionSpec): string => `--${spec.flag ?? kebab(spec.key)}`;
/** The environment variable of an option: REQUEST_BUDGET_COLLECTOR_ + its flag in upper snake case. */
export const envOf = (spec: OptionSpec): string => `${ENV_PREFIX}${flagOf(spec).slice(2).replace(/-/g, '_').toUpperCase()}`;

/** The configuration cannot be used; `problems` holds one line per problem. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

export type CliRequest = { kind: 'help' } | { kind: 'version' } | { kind: 'run'; config: CollectorConfig };

interface RawValue {
  readonly value: unknown;
  /** `--flag`, `ENV_NAME` or `file.yaml: key`: named in messages. */
  readonly source: string;
  /** Directory relative paths are resolved against. */
  readonly baseDir: string;
}

/**
 * Reads flags, environment and config file. Throws {@link ConfigError} listing every problem.
 * `cwd` resolves relative paths given on the command line or in the environment.
 */
export function resolveConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): CliRequest {
  const problems: string[] = [];
  const flags = parseFlags(argv, cwd, problems);
  if (flags === 'help' || flags === 'version') return { kind: flags };
  const fromEnv = new Map<string, RawValue>();
  for (const spec of OPTIONS) {
    const value = env[envOf(spec)];
    if (value !== undefined && value !== '') fromEnv.set(spec.key, { value, source: envOf(spec), baseDir: cwd });
  }
  const configSource = flags.get('config') ?? fromEnv.get('config');
  const fromFile = configSource === undefined ? new Map<string, RawValue>() : readConfigFile(configSource, problems);

  const values: Record<string, unknown> = {};
  for (const spec of OPTIONS) {
    if (spec.key === 'config') continue;
    const raw = flags.get(spec.key) ?? fromEnv.get(spec.key) ?? fromFile.get(spec.key);
    try {
      // A default is in the option's own form, so it goes through the same conversion.
      if (raw !== undefined) values[spec.key] = convert(spec, raw);
      else if (spec.default !== undefined) values[spec.key] = convert(spec, { value: spec.default, source: 'default', baseDir: cwd });
    } catch (error) {
      problems.push(`${raw?.source ?? 'default'}: ${(error as Error).message}`);
    }
  }
  const { listen, ...rest } = values as { listen?: { host: string; port: number } } & Omit<CollectorConfig, 'listenHost' | 'listenPort'>;
  if (rest.alertResolveAfterMs <= rest.alertResendIntervalMs) {
    problems.push(`alert resolve period (${rest.alertResolveAfterMs} ms) must be longer than the resend interval (${rest.alertResendIntervalMs} ms)`);
  }
  if (rest.retryMaxBackoffMs < rest.retryInitialBackoffMs) {
    problems.push(`retry max backoff (${rest.retryMaxBackoffMs} ms) is shorter than the initial backoff (${rest.retryInitialBackoffMs} ms)`);
  }
  // Node refuses a headers timeout longer than the request timeout.
  if (rest.requestTimeoutMs < rest.headersTimeoutMs) {
    problems.push(`request timeout (${rest.requestTimeoutMs} ms) is shorter than the headers timeout (${rest.headersTimeoutMs} ms)`);
  }
  if (rest.memoryLimitBytes < MIN_MEMORY_LIMIT_BYTES)
    problems.push(`memory limit (${rest.memoryLimitBytes} bytes) must be at least 1MiB: below it, a few spans would keep senders refused`);
  if (problems.length > 0 || listen === undefined) throw new ConfigError(problems);
  const config: CollectorConfig = { ...rest, listenHost: listen.host, listenPort: listen.port };
  return { kind: 'run', config };
}

function parseFlags(argv: readonly string[], cwd: string, problems: string[]): Map<string, RawValue> | 'help' | 'version' {
  const flags = new Map<string, RawValue>();
  const byFlag = new Map(OPTIONS.map((spec) => [flagOf(spec), spec]));
  for (const spec of OPTIONS) byFlag.set(`--${kebab(spec.key)}`, spec);
  for (let index = 0; index < argv.length; index += 1) {
    const arg = argv[index];
    if (arg === '--help' || arg === '-h') return 'help';
    if (arg === '--version') return 'version';
    if (!arg.startsWith('--')) {
      problems.push(`unexpected argument "${arg}" (options start with --)`);
      continue;
    }
    const equals = arg.indexOf('=');
    let name = equals >= 0 ? arg.slice(0, equals) : arg;
    let value: string | undefined = equals >= 0 ? arg.slice(equals + 1) : undefined;
    let spec = byFlag.get(name);
    if (spec === undefined && name.startsWith('--no-') && value === undefined) {
      const positive = byFlag.get(`--${name.slice(5)}`);
      if (positive?.type === 'boolean') {
        spec = positive;
        name = `--${name.slice(5)}`;
        value = 'false';
      }
    }
    if (spec === undefined) {
      problems.push(`unknown option ${name}`);
      continue;
    }
    if (value === undefined) {
      const next = argv[index + 1];
      if (spec.type === 'boolean' && (next === undefined || !/^(true|false)$/i.test(next))) value = 'true';
      else if (next === undefined || next.startsWith('--')) {
        problems.push(`${name}: expects ${spec.arg}`);
        continue;
      } else {
        value = next;
        index += 1;
      }
    }
    if (flags.has(spec.key)) problems.push(`${name}: given twice`);
    flags.set(spec.key, { value, source: name, baseDir: cwd });
  }
  return flags;
}

function readConfigFile(source: RawValue, problems: string[]): Map<string, RawValue> {
  const path = resolve(source.baseDir, String(source.value));
  const values = new Map<string, RawValue>();
  let parsed: unknown;
  try {
    parsed = parseYaml(readFileSync(path, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    problems.push(`${source.source}: cannot read config file ${path}: ${code ?? (error as Error).message.split('\n')[0]}`);
    return values;
  }
  if (parsed === null || parsed === undefined) return values;
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    problems.push(`${path}: expected a mapping of options, got ${Array.isArray(parsed) ? 'a list' : JSON.stringify(parsed)}`);
    return values;
  }
  const byKey = new Map<string, OptionSpec>();
  for (const spec of OPTIONS) {
    byKey.set(spec.key, spec);
    byKey.set(flagOf(spec).slice(2), spec);
    byKey.set(kebab(spec.key), spec);
    byKey.set(
      flagOf(spec)
        .slice(2)
        .replace(/-([a-z])/g, (_match, letter: string) => letter.toUpperCase()),
      spec,
    );
  }
  for (const [key, value] of Object.entries(parsed)) {
    const spec = byKey.get(key);
    if (spec === undefined || spec.key === 'config') {
      problems.push(
        `${path}: ${key}: unknown option (expected one of ${OPTIONS.filter((s) => s.key !== 'config')
          .map((s) => s.key)
          .join(', ')})`,
      );
      continue;
    }
    if (value !== null) values.set(spec.key, { value, source: `${path}: ${key}`, baseDir: dirname(path) });
  }
  return values;
}

function convert(spec: OptionSpec, raw: RawValue): unknown {
  const { value } = raw;
  const text = typeof value === 'string' ? value.trim() : value;
  switch (spec.type) {
    case 'listen':
      if (typeof text !== 'string') throw new Error(`expected HOST:PORT, got ${JSON.stringify(value)}`);
      return parseListen(text);
    case 'listenOrOff':
      if (typeof text === 'string' && text.toLowerCase() === 'off') return undefined;
      if (typeof text !== 'string') throw new Error(`expected HOST:PORT or off, got ${JSON.stringify(value)}`);
      return parseListen(text);
    case 'path':
      if (typeof text !== 'string' || text === '') throw new Error(`expected a file path, got ${JSON.stringify(value)}`);
      return resolve(raw.baseDir, text);
    case 'text':
      if (typeof text !== 'string' || text === '') throw new Error(`expected a non-empty string, got ${JSON.stringify(value)}`);
      return text;
    case 'url':
      return parseUrl(spec, text);
    case 'traceUrl': {
      const problem = typeof text === 'string' ? traceUrlTemplateProblem(text) : 'is not a string';
      if (problem !== undefined)
        throw new Error(`expected an http(s) URL with {traceId} in it, e.g. http://jaeger:16686/trace/{traceId}; ${JSON.stringify(value)} ${problem}`);
      return text;
    }
    case 'headers':
      return parseHeaders(value);
    case 'boolean':
      if (typeof value === 'boolean') return value;
      if (typeof text === 'string' && /^(true|false)$/i.test(text)) return text.toLowerCase() === 'true';
      throw new Error(`expected true or false, got ${JSON.stringify(value)}`);
    case 'count': {
      const number = typeof text === 'string' && /^\d+$/.test(text) ? Number(text) : text;
      if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < (spec.min ?? 0))
        throw new Error(`expected an integer ≥ ${spec.min ?? 0}, got ${JSON.stringify(value)}`);
      return number;
    }
    case 'duration': {
      const ms = parseDuration(text);
      if (ms === undefined) throw new Error(`expected a duration such as 500ms, 2s, 1m (a plain number is milliseconds), got ${JSON.stringify(value)}`);
      if (ms < (spec.min ?? 0)) throw new Error(`must be at least ${spec.min} ms, got ${JSON.stringify(value)}`);
      return ms;
    }
    case 'size': {
      const bytes = typeof text === 'string' || typeof text === 'number' ? parseByteSize(text) : undefined;
      if (bytes === undefined || bytes < 1) throw new Error(`expected a size such as 10MiB, 512KiB or a number of bytes, got ${JSON.stringify(value)}`);
      return bytes;
    }
  }
}

/** `host:port`, `:port` (all interfaces) or `[::1]:port`. */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || port > 65535) throw new Error(`expected HOST:PORT (e.g. 127.0.0.1:4318, 0.0.0.0:4318, [::1]:4318), got ${JSON.stringify(text)}`);
  return { host: match[1] ?? (match[2] === '' ? '0.0.0.0' : match[2]), port };
}

function parseUrl(spec: OptionSpec, value: unknown): string {
  if (typeof value !== 'string') throw new Error(`expected an http(s) URL, got ${JSON.stringify(value)}`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`expected an http(s) URL, got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`expected an http(s) URL, got ${JSON.stringify(value)}`);
  if (spec.key === 'otlpEndpoint' && !url.pathname.endsWith('/v1/traces')) url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/traces`;
  return url.toString();
}

function parseHeaders(value: unknown): Record<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const headers: Record<string, string> = {};
    for (const [key, inner] of Object.entries(value)) {
      if (!HEADER_NAME.test(key)) throw new Error('a header name is not a header name (RFC 9110 token; not shown: it may hold a secret)');
      if (typeof inner !== 'string') throw new Error(`header ${key}: expected a string value, got ${JSON.stringify(inner)}`);
      if (!HEADER_VALUE.test(inner))
        throw new Error(`header ${key}: the value has a character a header cannot carry (a line break, a control character, or one beyond Latin-1)`);
      headers[key.toLowerCase()] = inner;
    }
    return headers;
  }
  // Header values are secrets: a problem names the entry by position, never its text.
  if (typeof value !== 'string') throw new Error('expected key=value pairs separated by commas (the value is not shown: it may hold a secret)');
  const { headers, problems } = parseHeaderList(value);
  if (problems.length > 0)
    throw new Error(`expected key=value pairs separated by commas: ${problems.join('; ')} (the value is not shown: it may hold a secret)`);
  return headers;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `250ms`, `2s`, `1.5m`, `1h`, or a number of milliseconds. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  if (typeof value !== 'string') return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/i.exec(value.trim());
  if (match === null) return undefined;
  return Math.round(Number(match[1]) * DURATION_UNITS[(match[2] ?? 'ms').toLowerCase()]);
}

/** The --help text: every option with its variable and default. */
export function helpText(): string {
  const lines = [
    'request-budget-collector — per-request cost budgets, out of process, for any language.',
    '',
    'Receives OTLP/HTTP traces (protobuf or JSON, gzip or not) on POST /v1/traces, waits for each',
    "trace's root span, derives the cost record of roots that have none from their own DB and",
    'HTTP-client spans, judges it against the budget file, forwards to Jaeger (OTLP) and/or Zipkin,',
    'and sends breaches to Alertmanager, a webhook and the log.',
    '',
    'Usage: request-budget-collector [options]',
    '  e.g. request-budget-collector --listen 127.0.0.1:4318 --budgets budgets.yaml \\',
    '         --otlp-endpoint http://jaeger:4318 --zipkin-endpoint http://zipkin:9411/api/v2/spans \\',
    '         --alertmanager-url http://alertmanager:9093',
    '',
    'Options (flag, then environment variable; a flag wins over the environment, which wins over',
    'the --config file, which wins over the default):',
  ];
  for (const spec of OPTIONS) {
    lines.push(
      '',
      `  ${flagOf(spec)} ${spec.arg}`,
      `  ${envOf(spec)}`,
      ...wrap(`${spec.help}. Default: ${spec.defaultText}.`, 76).map((line) => `      ${line}`),
    );
  }
  lines.push(
    '',
    '  --help, -h       this text',
    '  --version        the version',
    '',
    'Durations: 500ms, 2s, 1m, 1h (a plain number is milliseconds). Sizes: 10MiB, 512KiB, 1GB, bytes.',
    'Booleans: --name / --no-name, or --name=true|false. Exit status 2: bad options or budget file.',
    '',
    'Endpoints: POST /v1/traces (OTLP/HTTP), GET /metrics (Prometheus), /healthz, /readyz on --listen;',
    'opentelemetry.proto.collector.trace.v1.TraceService/Export (OTLP/gRPC) on --grpc-listen.',
  );
  return `${lines.join('\n')}\n`;
}

/** The default as --help states it: `60s`, `10MiB`, `none`… */
function describeDefault(option: OptionDeclaration): string {
  const value = option.default;
  if (value === undefined) return option.noneText ?? 'none';
  if (option.type === 'duration') return formatDuration(value as number);
  if (option.type === 'size') return formatSize(value as number);
  if (option.type === 'headers') return Object.keys(value as object).length === 0 ? 'none' : JSON.stringify(value);
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value);
}

function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const)
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

function formatSize(bytes: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const)
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  return String(bytes);
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}
