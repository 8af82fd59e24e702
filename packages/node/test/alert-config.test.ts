/**
 * The alert delivery settings read from the environment: Alertmanager and webhook headers (the
 * OTEL_EXPORTER_OTLP_HEADERS form; secrets never printed), the trace link template, and
 * OTEL_LOG_LEVEL.
 */
import { DiagLogLevel } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { resolveConfig, type Environment } from '../src/config';

function resolve(env: Environment, options = {}) {
  const problems: string[] = [];
  const config = resolveConfig(options, env, (message) => problems.push(message));
  return { config, problems };
}

describe('alert headers', () => {
  it('reads both variables in the OTEL headers form, values URL-decoded', () => {
    const { config, problems } = resolve({
      REQUEST_BUDGET_ALERTMANAGER_HEADERS: 'Authorization=Basic%20YWxlcnQ6cHc%3D,X-Scope-OrgID=team-a',
      REQUEST_BUDGET_WEBHOOK_HEADERS: 'authorization=Bearer%20tok',
    });
    expect(config.alerts.alertmanagerHeaders).toEqual({ authorization: 'Basic YWxlcnQ6cHc=', 'x-scope-orgid': 'team-a' });
    expect(config.alerts.webhookHeaders).toEqual({ authorization: 'Bearer tok' });
    expect(problems).toEqual([]);
  });

  it('reports a bad entry once, by position, without its text, and keeps the good ones', () => {
    const { config, problems } = resolve({ REQUEST_BUDGET_WEBHOOK_HEADERS: 'Authorization: Bearer hunter2,x-tenant=t1' });
    expect(config.alerts.webhookHeaders).toEqual({ 'x-tenant': 't1' });
    expect(problems).toEqual([
      'REQUEST_BUDGET_WEBHOOK_HEADERS: entry 1 of 2 is not name=value (the value is not shown: it may hold a secret); ignoring that entry',
    ]);
  });

  it('none when unset or all bad; the options win over the variables', () => {
    expect(resolve({}).config.alerts).toMatchObject({ alertmanagerHeaders: undefined, webhookHeaders: undefined, traceUrl: undefined });
    expect(resolve({ REQUEST_BUDGET_ALERTMANAGER_HEADERS: 'nonsense' }).config.alerts.alertmanagerHeaders).toBeUndefined();
    const { config } = resolve({ REQUEST_BUDGET_ALERTMANAGER_HEADERS: 'a=1' }, { alertmanagerHeaders: { b: '2' }, traceUrl: 'http://ui/t/{traceId}' });
    expect(config.alerts.alertmanagerHeaders).toEqual({ b: '2' });
    expect(config.alerts.traceUrl).toBe('http://ui/t/{traceId}');
  });
});

describe('REQUEST_BUDGET_TRACE_URL', () => {
  it('takes a Jaeger or Zipkin template with {traceId}', () => {
    expect(resolve({ REQUEST_BUDGET_TRACE_URL: 'http://jaeger:16686/trace/{traceId}' }).config.alerts.traceUrl).toBe('http://jaeger:16686/trace/{traceId}');
    expect(resolve({ REQUEST_BUDGET_TRACE_URL: ' http://zipkin:9411/zipkin/traces/{traceId} ' }).config.alerts.traceUrl).toBe(
      'http://zipkin:9411/zipkin/traces/{traceId}',
    );
  });

  it('reports one without {traceId} or not http(s), and goes without', () => {
    const { config, problems } = resolve({ REQUEST_BUDGET_TRACE_URL: 'http://jaeger:16686/search' });
    expect(config.alerts.traceUrl).toBeUndefined();
    expect(problems).toEqual([
      'REQUEST_BUDGET_TRACE_URL="http://jaeger:16686/search" has no {traceId} to put the trace id in (e.g. http://jaeger:16686/trace/{traceId}); ignoring it',
    ]);
    expect(resolve({ REQUEST_BUDGET_TRACE_URL: 'jaeger:16686/trace/{traceId}x' }).problems).toEqual([
      'REQUEST_BUDGET_TRACE_URL="jaeger:16686/trace/{traceId}x" is not an http(s) URL (e.g. http://jaeger:16686/trace/{traceId}); ignoring it',
    ]);
  });
});

describe('OTEL_LOG_LEVEL', () => {
  it('reads the SDK level names in any case; unset is none', () => {
    const level = (value: string | undefined) => resolve({ OTEL_LOG_LEVEL: value }).config.logLevel;
    expect([
      level('none'),
      level('ERROR'),
      level('warn'),
      level('Info'),
      level('debug'),
      level('verbose'),
      level('all'),
      level(undefined),
      level('  '),
    ]).toEqual([
      DiagLogLevel.NONE,
      DiagLogLevel.ERROR,
      DiagLogLevel.WARN,
      DiagLogLevel.INFO,
      DiagLogLevel.DEBUG,
      DiagLogLevel.VERBOSE,
      DiagLogLevel.ALL,
      undefined,
      undefined,
    ]);
  });

  it('reports a bad value once and uses info, as NodeSDK does', () => {
    const { config, problems } = resolve({ OTEL_LOG_LEVEL: 'loud' });
    expect(config.logLevel).toBe(DiagLogLevel.INFO);
    expect(problems).toEqual(['OTEL_LOG_LEVEL="loud" is not one of none, error, warn, info, debug, verbose, all; using info, as the OpenTelemetry SDK does']);
  });
});
