import { context, SpanKind, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CostSpanProcessor } from '../src/cost-span-processor';
import { LateOperationLines, lateOperationOf } from '../src/late-operations';

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new CostSpanProcessor(), new SimpleSpanProcessor({ exporter })] });
const tracer = provider.getTracer('test');
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(async () => {
  await provider.shutdown();
  context.disable();
});
beforeEach(() => exporter.reset());

const startQuery = (statement: string) =>
  tracer.startSpan('pg.query', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': statement } });
const withSpan = <T>(span: Span, fn: () => T): T => context.with(trace.setSpan(context.active(), span), fn);
const finished = (statement: string) => exporter.getFinishedSpans().find((s) => s.attributes['db.query.text'] === statement)!;

describe('late operations', () => {
  it('marks a query that ends after its request, and one that starts after it, as late; not one in time', () => {
    const root = tracer.startSpan('GET', { kind: SpanKind.SERVER, attributes: { 'http.request.method': 'GET', 'http.route': '/x' } });
    const inTime = withSpan(root, () => startQuery('SELECT 1 AS in_time'));
    const unawaited = withSpan(root, () => startQuery('SELECT 2 AS unawaited'));
    inTime.end();
    const rootSpan = root as unknown as ReadableSpan;
    root.end();
    unawaited.end();
    withSpan(root, () => startQuery('SELECT 3 AS in_timer')).end();

    expect(rootSpan.attributes['cost.db.queries']).toBe(1);
    expect(lateOperationOf(finished('SELECT 1 AS in_time'))).toBeUndefined();
    for (const statement of ['SELECT 2 AS unawaited', 'SELECT 3 AS in_timer']) {
      const late = lateOperationOf(finished(statement));
      expect([statement, late?.root === rootSpan, late?.contribution]).toEqual([statement, true, { type: 'db', statement, rows: undefined }]);
    }
  });

  it('does not mark a query outside any request', () => {
    startQuery('SELECT 4 AS background').end();
    expect(lateOperationOf(finished('SELECT 4 AS background'))).toBeUndefined();
  });
});

describe('LateOperationLines', () => {
  const root = (route: string) => ({ attributes: { 'http.request.method': 'GET', 'http.route': route } }) as unknown as ReadableSpan;
  const db = (statement: string) => ({ type: 'db' as const, statement, rows: undefined });

  it('writes the first at once, then at most one line per route and kind per interval, summed', () => {
    let now = 1_000_000;
    const lines = new LateOperationLines({ intervalMs: 10_000, now: () => now });
    lines.record({ root: root('/a'), contribution: db("SELECT * FROM t WHERE id = 1 AND name = 'x'") });
    lines.record({ root: root('/b'), contribution: { type: 'http_client', timed: true } });
    expect(lines.take()).toBe(
      'request-budget: late: GET /a +1 query after the response (SELECT * FROM t WHERE id = ? AND name = ?)\n' +
        'request-budget: late: GET /b +1 HTTP call after the response\n',
    );
    for (let i = 0; i < 3; i += 1) lines.record({ root: root('/a'), contribution: db(`SELECT ${i}`) });
    now += 4_000;
    expect(lines.take()).toBe('');
    expect(lines.nextDueInMs()).toBe(6_000);
    now += 6_000;
    expect(lines.take()).toBe('request-budget: late: GET /a +3 queries after the response in the last 10s (SELECT ?)\n');
    expect(lines.nextDueInMs()).toBeUndefined();
  });

  it('writes what is held back when asked for all (shutdown), and bounds the routes it tracks', () => {
    let now = 0;
    const lines = new LateOperationLines({ intervalMs: 10_000, maxKeys: 1, now: () => now });
    lines.record({ root: root('/a'), contribution: db('SELECT 1') });
    lines.take();
    lines.record({ root: root('/a'), contribution: db('SELECT 1') });
    lines.record({ root: root('/other'), contribution: db('SELECT 1') });
    now += 2_000;
    expect(lines.take(true)).toBe(
      'request-budget: late: GET /a +1 query after the response in the last 2s (SELECT ?)\n' +
        'request-budget: late: 1 more late operations on other routes not shown (more than 1 routes at once)\n',
    );
  });
});
