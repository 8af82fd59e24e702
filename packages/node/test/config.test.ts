import { describe, expect, it } from 'vitest';
import { resolveConfig, type Environment } from '../src/config';

function resolve(env: Environment, options = {}) {
  const problems: string[] = [];
  const config = resolveConfig(options, env, (message) => problems.push(message));
  return { config, problems };
}

describe('resolveConfig', () => {
  it('prints the summary and exports nothing when no exporter is configured at all', () => {
    const { config, problems } = resolve({});
    expect(config.traceExporters).toEqual([]);
    expect(config.summary).toBe(true);
    expect(config.disabled).toBe(false);
    expect(config.instrumentations).toEqual([
      'http',
      'express',
      'fastify',
      'koa',
      'pg',
      'postgres',
      'mysql2',
      'ioredis',
      'redis',
      'undici',
      'mongodb',
      'bullmq',
      'amqplib',
      'pg-boss',
    ]);
    expect(config.sampler.toString()).toBe(
      'ParentBased{root=AlwaysOnSampler, remoteParentSampled=AlwaysOnSampler, remoteParentNotSampled=AlwaysOffSampler, localParentSampled=AlwaysOnSampler, localParentNotSampled=AlwaysOffSampler}',
    );
    expect(problems).toEqual([]);
  });

  it('exports OTLP when only an OTLP endpoint is set, and builds the traces URL from it', () => {
    const { config } = resolve({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' });
    expect(config.traceExporters).toEqual(['otlp']);
    expect(config.otlpEndpoint).toBe('http://collector:4318/v1/traces');
    expect(config.otlpProtocol).toBe('http/protobuf');
    expect(config.summary).toBe(false);
  });

  it('takes the traces endpoint as it is and the traces protocol before the general one', () => {
    const { config } = resolve({
      OTEL_TRACES_EXPORTER: 'otlp,zipkin',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://jaeger:4318/custom',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_EXPORTER_ZIPKIN_ENDPOINT: 'http://zipkin:9411/api/v2/spans',
      REQUEST_BUDGET_SUMMARY: 'true',
    });
    expect(config.traceExporters).toEqual(['otlp', 'zipkin']);
    expect(config.otlpEndpoint).toBe('http://jaeger:4318/custom');
    expect(config.otlpProtocol).toBe('http/json');
    expect(config.zipkinEndpoint).toBe('http://zipkin:9411/api/v2/spans');
    expect(config.summary).toBe(true);
  });

  it('lets explicit options win over the environment', () => {
    const { config } = resolve(
      { OTEL_TRACES_EXPORTER: 'zipkin', OTEL_SERVICE_NAME: 'env-name' },
      { traceExporters: ['console'], serviceName: 'option-name', summary: false },
    );
    expect(config.traceExporters).toEqual(['console']);
    expect(config.serviceName).toBe('option-name');
    expect(config.summary).toBe(false);
  });

  it('exports the root of a breached unsampled request by default; whole traces and their rate from env or options, bad values reported', () => {
    expect(resolve({}).config).toMatchObject({ exportBreachedTraces: true, breachedTraceDetail: 'root', wholeBreachedTracesPerMinute: 60 });
    const fromEnv = resolve({ REQUEST_BUDGET_EXPORT_BREACHED_DETAIL: 'trace', REQUEST_BUDGET_EXPORT_BREACHED_TRACES_PER_MINUTE: '5' });
    expect(fromEnv.config).toMatchObject({ breachedTraceDetail: 'trace', wholeBreachedTracesPerMinute: 5 });
    expect(fromEnv.problems).toEqual([]);
    const bad = resolve({ REQUEST_BUDGET_EXPORT_BREACHED_DETAIL: 'all', REQUEST_BUDGET_EXPORT_BREACHED_TRACES_PER_MINUTE: '-1' });
    expect(bad.config).toMatchObject({ breachedTraceDetail: 'root', wholeBreachedTracesPerMinute: 60 });
    expect(bad.problems).toEqual([
      'REQUEST_BUDGET_EXPORT_BREACHED_DETAIL="all" is not one of root, trace; ignoring it',
      'REQUEST_BUDGET_EXPORT_BREACHED_TRACES_PER_MINUTE="-1" is not a number from 0 to 1000000; ignoring it',
    ]);
    const badOption = resolve({ REQUEST_BUDGET_EXPORT_BREACHED_TRACES_PER_MINUTE: '7' }, { wholeBreachedTracesPerMinute: Number.NaN });
    expect(badOption.config.wholeBreachedTracesPerMinute).toBe(7);
    expect(badOption.problems).toEqual(['the wholeBreachedTracesPerMinute option NaN is not a number from 0 to 1000000; ignoring it']);
  });

  it('measures memory 5% of the time by default; the share from env or options, bad values reported; off altogether', () => {
    expect(resolve({}).config).toMatchObject({ memoryAttribution: true, memorySampleRatio: 0.05 });
    expect(resolve({ REQUEST_BUDGET_MEMORY_SAMPLE_RATIO: '1' }).config.memorySampleRatio).toBe(1);
    expect(resolve({ REQUEST_BUDGET_MEMORY_ATTRIBUTION: 'false' }).config.memoryAttribution).toBe(false);
    const bad = resolve({ REQUEST_BUDGET_MEMORY_SAMPLE_RATIO: '0' }, { memorySampleRatio: -1 });
    expect(bad.config.memorySampleRatio).toBe(0.05);
    expect(bad.problems).toEqual([
      'the memorySampleRatio option -1 is not a number from 0.001 to 1; ignoring it',
      'REQUEST_BUDGET_MEMORY_SAMPLE_RATIO="0" is not a number from 0.001 to 1; ignoring it',
    ]);
  });

  it('"none" turns export off', () => {
    expect(resolve({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:4318' }).config.traceExporters).toEqual([]);
  });

  it('reports each bad value in one line naming variable and value, and falls back', () => {
    const { config, problems } = resolve({
      OTEL_TRACES_EXPORTER: 'jaeger',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'udp',
      OTEL_EXPORTER_ZIPKIN_ENDPOINT: 'not a url',
      OTEL_TRACES_SAMPLER: 'sometimes',
      OTEL_SDK_DISABLED: 'maybe',
      REQUEST_BUDGET_SUMMARY: 'loud',
      OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'pg,kafka',
      OTEL_BSP_SCHEDULE_DELAY: '-5',
    });
    expect(problems).toEqual([
      'OTEL_TRACES_EXPORTER="jaeger": unknown "jaeger" (expected otlp, zipkin, console, none); ignoring it',
      'OTEL_EXPORTER_OTLP_PROTOCOL="udp" is not one of http/protobuf, http/json, grpc; ignoring it',
      'REQUEST_BUDGET_SUMMARY="loud" is not a boolean (expected true or false); ignoring it',
      'OTEL_SDK_DISABLED="maybe" is not a boolean (expected true or false); ignoring it',
      'OTEL_EXPORTER_ZIPKIN_ENDPOINT="not a url" is not an http(s) URL; ignoring it',
      'OTEL_TRACES_SAMPLER="sometimes" is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio; ignoring it',
      'OTEL_NODE_DISABLED_INSTRUMENTATIONS="pg,kafka": unknown "kafka" (expected http, express, fastify, koa, pg, postgres, mysql2, ioredis, redis, undici, mongodb, bullmq, amqplib, pg-boss); ignoring it',
      'OTEL_BSP_SCHEDULE_DELAY="-5" is not a number from 0 to 3600000; ignoring it',
    ]);
    expect(config.traceExporters).toEqual([]);
    expect(config.summary).toBe(true);
    expect(config.otlpProtocol).toBe('http/protobuf');
    expect(config.zipkinEndpoint).toBe('http://localhost:9411/api/v2/spans');
    expect(config.disabled).toBe(false);
    expect(config.instrumentations).toEqual([
      'http',
      'express',
      'fastify',
      'koa',
      'postgres',
      'mysql2',
      'ioredis',
      'redis',
      'undici',
      'mongodb',
      'bullmq',
      'amqplib',
      'pg-boss',
    ]);
    expect(config.batch.scheduledDelayMillis).toBeUndefined();
  });

  it('builds a ratio sampler and reports an out-of-range ratio', () => {
    const good = resolve({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' });
    expect(good.config.sampler.toString()).toBe(
      'ParentBased{root=TraceIdRatioBased{0.1}, remoteParentSampled=AlwaysOnSampler, remoteParentNotSampled=AlwaysOffSampler, localParentSampled=AlwaysOnSampler, localParentNotSampled=AlwaysOffSampler}',
    );
    const bad = resolve({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '1.5' });
    expect(bad.problems).toEqual(['OTEL_TRACES_SAMPLER_ARG="1.5" is not a number from 0 to 1; ignoring it']);
    expect(bad.config.sampler.toString()).toBe('TraceIdRatioBased{1}');
  });

  it('honours OTEL_SDK_DISABLED (true only, as the spec reads booleans) and the enabled-instrumentations list', () => {
    expect(resolve({ OTEL_SDK_DISABLED: 'TRUE' }).config.disabled).toBe(true);
    expect(resolve({ OTEL_SDK_DISABLED: '1' }).config.disabled).toBe(false);
    expect(resolve({ OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http, pg' }).config.instrumentations).toEqual(['http', 'pg']);
    // Asking only for unknown ones enables none, not all.
    expect(resolve({ OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'kafka' }).config.instrumentations).toEqual([]);
  });

  it('turns the summary on by default only when nothing at all is configured', () => {
    expect(resolve({}).config).toMatchObject({ summary: true, summaryByDefault: true });
    expect(resolve({ OTEL_TRACES_EXPORTER: 'none' }).config).toMatchObject({ summary: false, summaryByDefault: false });
    expect(resolve({ OTEL_TRACES_EXPORTER: 'none', REQUEST_BUDGET_SUMMARY: 'true' }).config).toMatchObject({ summary: true, summaryByDefault: false });
    expect(resolve({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }).config).toMatchObject({ traceExporters: [], summary: true });
  });
});
