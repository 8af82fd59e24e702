import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { BudgetRuleSet, parseBudgetText, type BreachReport } from '@request-budget/core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BudgetSpanProcessor } from '../src/budget-span-processor';
import { CostSpanProcessor } from '../src/cost-span-processor';
import { withBudget } from '../src/job';

const rules = new BudgetRuleSet(
  parseBudgetText(
    `version: 1
defaults: { queries: 20 }
routes:
  - match: GET /users/:id
    queries: 2
    repeatedQueries: 1
    severity: critical
  - match: GET /prices
    repeatedQueries: 2
    allowRepeated: ["SELECT price FROM prices WHERE sku = ?"]
jobs:
  - match: email.*
    queries: 1
`,
    'b.yaml',
  ),
);
const breaches: BreachReport[] = [];
const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({
  spanProcessors: [
    new CostSpanProcessor(),
    new BudgetSpanProcessor({ rules, serviceName: 'svc', errorStatusOnCritical: true, onBreach: (reports) => breaches.push(...reports) }),
    new SimpleSpanProcessor({ exporter }),
  ],
});
const tracer = provider.getTracer('test');

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
});
afterAll(async () => {
  await provider.shutdown();
  trace.disable();
  context.disable();
});
beforeEach(() => {
  exporter.reset();
  breaches.length = 0;
});

function query(statement: string): void {
  tracer.startSpan('pg.query', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': statement } }).end();
}

function request(method: string, route: string | undefined, work: () => void): Span {
  const span = tracer.startSpan(`${method} ${route ?? ''}`, {
    kind: SpanKind.SERVER,
    attributes: { 'http.request.method': method, ...(route ? { 'http.route': route } : {}) },
  });
  context.with(trace.setSpan(context.active(), span), work);
  span.end();
  return span;
}

const finished = (name: string) => exporter.getFinishedSpans().find((s) => s.name === name)!;

describe('BudgetSpanProcessor', () => {
  it('marks a breaching request with rule, violations, one event per violation and ERROR for critical', () => {
    request('GET', '/users/:id', () => {
      for (let id = 1; id <= 3; id += 1) query(`SELECT * FROM users WHERE id = ${id}`);
    });
    const span = finished('GET /users/:id');
    expect(span.attributes['budget.rule']).toBe('GET /users/:id');
    expect(span.attributes['budget.breached']).toBe(true);
    expect(span.attributes['budget.violations']).toEqual(['db.queries 3>2', 'db.repeated_count 3>1']);
    expect(span.events.map((e) => [e.name, e.attributes])).toEqual([
      ['budget.breach', { metric: 'db.queries', value: 3, limit: 2, severity: 'critical' }],
      ['budget.breach', { metric: 'db.repeated_count', value: 3, limit: 1, severity: 'critical', statement: 'SELECT * FROM users WHERE id = ?' }],
    ]);
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'budget exceeded: db.queries 3>2, db.repeated_count 3>1' });
    expect(
      breaches.map(({ service, route, rule, metric, value, limit, severity, traceId }) => ({ service, route, rule, metric, value, limit, severity, traceId })),
    ).toEqual([
      {
        service: 'svc',
        route: 'GET /users/:id',
        rule: 'GET /users/:id',
        metric: 'db.queries',
        value: 3,
        limit: 2,
        severity: 'critical',
        traceId: span.spanContext().traceId,
      },
      {
        service: 'svc',
        route: 'GET /users/:id',
        rule: 'GET /users/:id',
        metric: 'db.repeated_count',
        value: 3,
        limit: 1,
        severity: 'critical',
        traceId: span.spanContext().traceId,
      },
    ]);
  });

  it('writes breached=false and the defaults rule for a request within budget or without a route', () => {
    request('GET', undefined, () => query('SELECT 1'));
    const span = finished('GET ');
    expect(span.attributes['budget.rule']).toBe('defaults');
    expect(span.attributes['budget.breached']).toBe(false);
    expect(span.attributes['budget.violations']).toBeUndefined();
    expect(span.events).toEqual([]);
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(breaches).toEqual([]);
  });

  it('judges the next most repeated statement when the top one is allowed', () => {
    request('GET', '/prices', () => {
      for (let i = 0; i < 10; i += 1) query(`SELECT price FROM prices WHERE sku = ${i}`);
      for (let i = 0; i < 3; i += 1) query(`SELECT name FROM skus WHERE id = ${i}`);
    });
    expect(finished('GET /prices').attributes['budget.violations']).toEqual(['db.repeated_count 3>2']);
  });

  it('judges a job by the jobs rules and keeps its queries off the request that started it', async () => {
    const parent = tracer.startSpan('GET /send', { kind: SpanKind.SERVER, attributes: { 'http.request.method': 'GET', 'http.route': '/send' } });
    await context.with(trace.setSpan(context.active(), parent), () =>
      withBudget('email.send', async () => {
        query('SELECT 1');
        query('SELECT 2');
      }),
    );
    parent.end();
    const job = finished('job email.send');
    expect(job.attributes['cost.db.queries']).toBe(2);
    expect(job.attributes['budget.rule']).toBe('email.*');
    expect(job.attributes['budget.violations']).toEqual(['db.queries 2>1']);
    expect(job.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(finished('GET /send').attributes['cost.db.queries']).toBe(0);
    expect(breaches[0]?.route).toBe('job email.send');
  });

  it('records a failing job as an error and rethrows', async () => {
    await expect(withBudget('email.fail', async () => Promise.reject(new Error('smtp down')))).rejects.toThrow('smtp down');
    expect(finished('job email.fail').status).toEqual({ code: SpanStatusCode.ERROR, message: 'smtp down' });
  });
});
