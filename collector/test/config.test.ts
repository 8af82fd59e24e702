/**
 * Configuration: flags over environment over config file over defaults, every problem reported
 * with where it came from; and the CLI itself: --help, and exit status 2 with a clear message
 * for bad flags, bad environment values, a bad config file or a bad budget file.
 */
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, OPTIONS, flagOf, envOf, parseDuration, resolveConfig, type CliRequest, type CollectorConfig } from '../src/config';
import { repoRoot } from '../../test/support/paths';
import { CLI, COLLECTOR_BUDGETS } from './support/collector-process';

const FIXTURES = path.join(repoRoot, 'collector', 'test', 'fixtures');
const run = (argv: string[], env: NodeJS.ProcessEnv = {}): CollectorConfig => {
  const request = resolveConfig(argv, env, '/srv/app') as Extract<CliRequest, { kind: 'run' }>;
  expect(request.kind).toBe('run');
  return request.config;
};
const problems = (argv: string[], env: NodeJS.ProcessEnv = {}): readonly string[] => {
  try {
    resolveConfig(argv, env, '/srv/app');
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
};

describe('resolving the configuration', () => {
  it('has the documented defaults', () => {
    expect(run([])).toEqual({
      listenHost: '127.0.0.1',
      listenPort: 4318,
      grpcListen: { host: '127.0.0.1', port: 4317 },
      budgetsPath: undefined,
      otlpEndpoint: undefined,
      otlpHeaders: {},
      zipkinEndpoint: undefined,
      alertmanagerUrl: undefined,
      alertmanagerHeaders: {},
      webhookUrl: undefined,
      webhookHeaders: {},
      traceUrl: undefined,
      alertLog: true,
      alertResendIntervalMs: 60_000,
      alertResolveAfterMs: 300_000,
      errorOnCritical: false,
      authToken: undefined,
      maxBodyBytes: 10 * 1024 * 1024,
      maxConcurrentRequests: 32,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 60_000,
      idleTimeoutMs: 10_000,
      keepAliveTimeoutMs: 15_000,
      graceMs: 2000,
      maxTraceWaitMs: 30_000,
      maxTraces: 50_000,
      maxSpansPerTrace: 2000,
      maxQueueSpans: 500_000,
      memoryLimitBytes: 256 * 1024 * 1024,
      maxBatchSpans: 512,
      forwardConcurrency: 4,
      forwardTimeoutMs: 10_000,
      retryInitialBackoffMs: 500,
      retryMaxBackoffMs: 30_000,
      retryMaxElapsedMs: 300_000,
      shutdownTimeoutMs: 10_000,
    });
  });

  it('reads the example command line of the README', () => {
    const config = run([
      '--listen',
      '127.0.0.1:4318',
      '--budgets',
      'budgets.yaml',
      '--otlp-endpoint',
      'http://jaeger:4318',
      '--zipkin-endpoint',
      'http://zipkin:9411/api/v2/spans',
      '--alertmanager-url',
      'http://alertmanager:9093',
    ]);
    expect(config).toMatchObject({
      budgetsPath: '/srv/app/budgets.yaml',
      otlpEndpoint: 'http://jaeger:4318/v1/traces',
      zipkinEndpoint: 'http://zipkin:9411/api/v2/spans',
      alertmanagerUrl: 'http://alertmanager:9093/',
    });
  });

  it('takes flags over the environment, the environment over the file, the file over the defaults', () => {
    const config = run(['--config', path.join(FIXTURES, 'collector.yaml'), '--max-traces=7'], {
      REQUEST_BUDGET_COLLECTOR_MAX_TRACES: '8',
      REQUEST_BUDGET_COLLECTOR_GRACE_PERIOD: '250ms',
      REQUEST_BUDGET_COLLECTOR_ALERT_LOG: 'false',
    });
    expect(config).toMatchObject({
      maxTraces: 7, // flag (env and file say otherwise)
      graceMs: 250, // env (file says 1500)
      budgetsPath: path.join(FIXTURES, 'budgets.yaml'), // file, relative to the file
      otlpEndpoint: 'http://127.0.0.1:9/v1/traces', // file
      alertLog: false, // env
      maxSpansPerTrace: 2000, // default
    });
    expect(run([], { REQUEST_BUDGET_COLLECTOR_CONFIG: path.join(FIXTURES, 'collector.yaml') }).maxTraces).toBe(500);
  });

  it('reads every kind of value', () => {
    const config = run([
      '--listen',
      '[::1]:0',
      '--no-alert-log',
      '--error-on-critical',
      '--max-body-size',
      '512KiB',
      '--shutdown-timeout',
      '1.5s',
      '--retry-max-elapsed',
      '2m',
      '--otlp-headers',
      'authorization=Bearer%20abc,X-Tenant=t1',
      '--otlp-endpoint',
      'https://otlp.example:4318/custom/v1/traces',
    ]);
    expect(config).toMatchObject({
      listenHost: '::1',
      listenPort: 0,
      alertLog: false,
      errorOnCritical: true,
      maxBodyBytes: 512 * 1024,
      shutdownTimeoutMs: 1500,
      retryMaxElapsedMs: 120_000,
      otlpHeaders: { authorization: 'Bearer abc', 'x-tenant': 't1' },
      otlpEndpoint: 'https://otlp.example:4318/custom/v1/traces',
    });
    expect(run(['--listen', ':4318'])).toMatchObject({ listenHost: '0.0.0.0', listenPort: 4318 });
    expect([parseDuration('250'), parseDuration(250), parseDuration('1h'), parseDuration('soon'), parseDuration('-1s')]).toEqual([
      250,
      250,
      3_600_000,
      undefined,
      undefined,
    ]);
  });

  it('reads the alert headers and the trace link template from flags and the environment; a bad header is said without its text', () => {
    expect(
      run(['--alertmanager-headers', 'Authorization=Basic%20YWxlcnQ6cHc%3D', '--trace-url', 'http://jaeger:16686/trace/{traceId}'], {
        REQUEST_BUDGET_COLLECTOR_WEBHOOK_HEADERS: 'authorization=Bearer%20tok,X-Tenant=t1',
      }),
    ).toMatchObject({
      alertmanagerHeaders: { authorization: 'Basic YWxlcnQ6cHc=' },
      webhookHeaders: { authorization: 'Bearer tok', 'x-tenant': 't1' },
      traceUrl: 'http://jaeger:16686/trace/{traceId}',
    });
    expect(run([], { REQUEST_BUDGET_COLLECTOR_TRACE_URL: 'http://zipkin:9411/zipkin/traces/{traceId}' }).traceUrl).toBe(
      'http://zipkin:9411/zipkin/traces/{traceId}',
    );
    expect(
      problems(['--trace-url', 'http://jaeger:16686/search'], {
        REQUEST_BUDGET_COLLECTOR_WEBHOOK_HEADERS: 'Authorization: Bearer hunter2',
        REQUEST_BUDGET_COLLECTOR_OTLP_HEADERS: 'x-key=100%',
      }),
    ).toEqual([
      'REQUEST_BUDGET_COLLECTOR_OTLP_HEADERS: expected key=value pairs separated by commas: entry 1 of 1 (x-key): the value is not URL-encoded text (a lone "%"?) (the value is not shown: it may hold a secret)',
      'REQUEST_BUDGET_COLLECTOR_WEBHOOK_HEADERS: expected key=value pairs separated by commas: entry 1 of 1 is not name=value (the value is not shown: it may hold a secret)',
      '--trace-url: expected an http(s) URL with {traceId} in it, e.g. http://jaeger:16686/trace/{traceId}; "http://jaeger:16686/search" has no {traceId} to put the trace id in',
    ]);
    // A value Node's HTTP client would refuse on every send is refused here, once, without its text.
    expect(problems(['--otlp-headers', 'authorization=Bearer%0Ahunter2,x-tenant=%E2%9C%93'], {})).toEqual([
      '--otlp-headers: expected key=value pairs separated by commas: entry 1 of 2 (authorization): the value has a character a header cannot carry (a line break, a control character, or one beyond Latin-1); entry 2 of 2 (x-tenant): the value has a character a header cannot carry (a line break, a control character, or one beyond Latin-1) (the value is not shown: it may hold a secret)',
    ]);
  });

  it('reads --max-concurrent-requests from a flag, the environment or the file, and refuses what is not a count ≥ 1', () => {
    expect(run([]).maxConcurrentRequests).toBe(32);
    expect(run(['--max-concurrent-requests', '4']).maxConcurrentRequests).toBe(4);
    expect(run([], { REQUEST_BUDGET_COLLECTOR_MAX_CONCURRENT_REQUESTS: '8' }).maxConcurrentRequests).toBe(8);
    expect(run(['--max-concurrent-requests=2'], { REQUEST_BUDGET_COLLECTOR_MAX_CONCURRENT_REQUESTS: '8' }).maxConcurrentRequests).toBe(2);
    expect(run(['--config', path.join(FIXTURES, 'collector.yaml')]).maxConcurrentRequests).toBe(16);
    expect(problems(['--max-concurrent-requests', 'many'])).toEqual(['--max-concurrent-requests: expected an integer ≥ 1, got "many"']);
    expect(problems([], { REQUEST_BUDGET_COLLECTOR_MAX_CONCURRENT_REQUESTS: '0' })).toEqual([
      'REQUEST_BUDGET_COLLECTOR_MAX_CONCURRENT_REQUESTS: expected an integer ≥ 1, got "0"',
    ]);
    expect(problems(['--max-concurrent-requests', '2.5'])).toEqual(['--max-concurrent-requests: expected an integer ≥ 1, got "2.5"']);
  });

  it('reports every problem at once, each with its source', () => {
    expect(
      problems(['--max-traces', 'lots', '--bogus', 'x', '--grace-period', 'soon', '--otlp-endpoint', 'jaeger:4318', 'stray'], {
        REQUEST_BUDGET_COLLECTOR_LISTEN: 'localhost',
        REQUEST_BUDGET_COLLECTOR_MAX_BODY_SIZE: 'huge',
        REQUEST_BUDGET_COLLECTOR_ALERT_LOG: 'maybe',
      }),
    ).toEqual([
      'unknown option --bogus',
      'unexpected argument "x" (options start with --)',
      'unexpected argument "stray" (options start with --)',
      'REQUEST_BUDGET_COLLECTOR_LISTEN: expected HOST:PORT (e.g. 127.0.0.1:4318, 0.0.0.0:4318, [::1]:4318), got "localhost"',
      '--otlp-endpoint: expected an http(s) URL, got "jaeger:4318"',
      'REQUEST_BUDGET_COLLECTOR_ALERT_LOG: expected true or false, got "maybe"',
      'REQUEST_BUDGET_COLLECTOR_MAX_BODY_SIZE: expected a size such as 10MiB, 512KiB or a number of bytes, got "huge"',
      '--grace-period: expected a duration such as 500ms, 2s, 1m (a plain number is milliseconds), got "soon"',
      '--max-traces: expected an integer ≥ 1, got "lots"',
    ]);
    expect(problems(['--max-traces'])).toEqual(['--max-traces: expects N']);
    expect(problems(['--max-traces', '1', '--max-traces', '2'])).toEqual(['--max-traces: given twice']);
    expect(problems(['--alert-resend-interval', '10s', '--alert-resolve-after', '5s'])).toEqual([
      'alert resolve period (5000 ms) must be longer than the resend interval (10000 ms)',
    ]);
  });

  it('names the file and the key for problems in the config file', () => {
    expect(problems(['--config', path.join(FIXTURES, 'missing.yaml')])).toEqual([
      `--config: cannot read config file ${path.join(FIXTURES, 'missing.yaml')}: ENOENT`,
    ]);
    const file = path.join(FIXTURES, 'collector.yaml');
    // The file's own values are fine: break one through a copy with a bad key and value.
    const bad = path.join(FIXTURES, 'bad-collector.yaml');
    expect(problems(['--config', bad])).toEqual([
      `${bad}: maxTracez: unknown option (expected one of ${OPTIONS.filter((spec) => spec.key !== 'config')
        .map((spec) => spec.key)
        .join(', ')})`,
      `${bad}: graceMs: expected a duration such as 500ms, 2s, 1m (a plain number is milliseconds), got "later"`,
    ]);
    expect(run([], { REQUEST_BUDGET_COLLECTOR_CONFIG: file }).graceMs).toBe(1500);
  });

  it('reads the connection timeouts from flags and the environment, and refuses a request timeout shorter than the headers timeout', () => {
    expect(
      run(['--headers-timeout', '2s', '--request-timeout', '30s', '--idle-timeout=1500ms'], { REQUEST_BUDGET_COLLECTOR_KEEP_ALIVE_TIMEOUT: '5s' }),
    ).toMatchObject({ headersTimeoutMs: 2000, requestTimeoutMs: 30_000, idleTimeoutMs: 1500, keepAliveTimeoutMs: 5000 });
    expect(problems(['--idle-timeout', '0'])).toEqual(['--idle-timeout: must be at least 100 ms, got "0"']);
    expect(problems(['--headers-timeout', '20s', '--request-timeout', '10s'])).toEqual([
      'request timeout (10000 ms) is shorter than the headers timeout (20000 ms)',
    ]);
  });

  it('gives each option a flag and an environment variable', () => {
    const flags = OPTIONS.map(flagOf);
    expect(new Set(flags).size).toBe(OPTIONS.length);
    expect(OPTIONS.map(envOf).every((name) => /^REQUEST_BUDGET_COLLECTOR_[A-Z_]+$/.test(name))).toBe(true);
    expect(flags).toContain('--budgets');
    expect(flags).toContain('--grace-period');
  });
});

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 20_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('the request-budget-collector command', () => {
  it('--help documents every option with its variable and default, and exits 0', () => {
    const { status, stdout, stderr } = cli(['--help']);
    expect([status, stderr]).toEqual([0, '']);
    expect(stdout.split('\n')[0]).toBe('request-budget-collector — per-request cost budgets, out of process, for any language.');
    expect(stdout).toContain('Usage: request-budget-collector [options]');
    for (const spec of OPTIONS) {
      expect(stdout).toContain(`  ${flagOf(spec)} ${spec.arg}\n  ${envOf(spec)}\n`);
      expect(stdout.replace(/\s+/g, ' ')).toContain(`. Default: ${spec.defaultText}.`);
    }
    // The alert delivery options, by name.
    expect(stdout).toContain('  --alertmanager-headers K=V,…\n  REQUEST_BUDGET_COLLECTOR_ALERTMANAGER_HEADERS\n');
    expect(stdout).toContain('  --webhook-headers K=V,…\n  REQUEST_BUDGET_COLLECTOR_WEBHOOK_HEADERS\n');
    expect(stdout).toContain('  --trace-url TEMPLATE\n  REQUEST_BUDGET_COLLECTOR_TRACE_URL\n');
    expect(stdout.replace(/\s+/g, ' ')).toContain(
      "link to a breach's trace in your tracing UI, {traceId} replaced: e.g. http://jaeger:16686/trace/{traceId} or http://zipkin:9411/zipkin/traces/{traceId}; each Alertmanager alert's generatorURL (the trace of its latest breach), and trace_url in webhook and log breach events. Default: none (alerts carry the trace id only).",
    );
  });

  it('exits 2 with one line per problem for bad flags and environment values', () => {
    expect(cli(['--max-traces', 'lots', '--bogus'], { REQUEST_BUDGET_COLLECTOR_LISTEN: 'nowhere' })).toEqual({
      status: 2,
      stdout: '',
      stderr: [
        'request-budget-collector: unknown option --bogus',
        'request-budget-collector: REQUEST_BUDGET_COLLECTOR_LISTEN: expected HOST:PORT (e.g. 127.0.0.1:4318, 0.0.0.0:4318, [::1]:4318), got "nowhere"',
        'request-budget-collector: --max-traces: expected an integer ≥ 1, got "lots"',
        'request-budget-collector: run request-budget-collector --help for the options',
        '',
      ].join('\n'),
    });
  });

  it('exits 2 for a config file it cannot use', () => {
    const bad = path.join(FIXTURES, 'bad-collector.yaml');
    const { status, stderr } = cli(['--config', bad]);
    expect(status).toBe(2);
    expect(stderr).toContain(`request-budget-collector: ${bad}: maxTracez: unknown option (expected one of `);
  });

  it('exits 2 for a budget file with mistakes, naming file, line and field', () => {
    const { status, stderr } = cli(['--listen', '127.0.0.1:0', '--budgets', path.join(repoRoot, 'test', 'fixtures', 'bad-budgets.yaml')]);
    expect(status).toBe(2);
    expect(stderr).toBe(
      [
        `request-budget-collector: budget file ${path.join(repoRoot, 'test', 'fixtures', 'bad-budgets.yaml')} rejected:`,
        'request-budget-collector:   bad-budgets.yaml:6 routes[0].queries: expected a non-negative integer, got "three"',
        'request-budget-collector:   bad-budgets.yaml:8 routes[1].rowz: unknown key (expected one of match, queries, dbTimeMs, rows, repeatedQueries, heapDeltaBytes, allocatedBytes, dbBytes, durationMs, httpClientCalls, untimedHttpCalls, enqueuedJobs, severity, heapMinConfidence, allowRepeated)',
        '',
      ].join('\n'),
    );
  });

  it('exits 1 when its port is taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      const { status, stderr } = cli(['--listen', `127.0.0.1:${port}`, '--budgets', COLLECTOR_BUDGETS, '--otlp-endpoint', 'http://127.0.0.1:4318']);
      expect([status, stderr]).toEqual([1, `request-budget-collector: cannot start: 127.0.0.1:${port} is in use\n`]);
    } finally {
      blocker.close();
    }
  });

  it('exits 1 with one line, without grpc-js noise, when its gRPC port is taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      const args = [
        '--listen',
        '127.0.0.1:0',
        '--grpc-listen',
        `127.0.0.1:${port}`,
        '--budgets',
        COLLECTOR_BUDGETS,
        '--otlp-endpoint',
        'http://127.0.0.1:4318',
      ];
      expect(cli(args)).toEqual({
        status: 1,
        stdout: '',
        stderr: `request-budget-collector: cannot start: 127.0.0.1:${port} (--grpc-listen, OTLP/gRPC) is in use; give --grpc-listen another port, or --grpc-listen off\n`,
      });
    } finally {
      blocker.close();
    }
  });
});
