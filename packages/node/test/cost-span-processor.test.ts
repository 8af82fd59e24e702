import { context, SpanKind, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CostSpanProcessor, ROOT_MARKER_ATTRIBUTE } from '../src/cost-span-processor';

const exporter = new InMemorySpanExporter();
const costs = new CostSpanProcessor();
const provider = new TracerProvider({ spanProcessors: [costs, new SimpleSpanProcessor({ exporter })] });
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

/** A finished query span lasting exactly `durationMs` (explicit start and end times). */
function query(statement: string, rows?: number, durationMs = 1.5): void {
  const span = tracer.startSpan('pg.query', {
    kind: SpanKind.CLIENT,
    startTime: [1_700_000_000, 0],
    attributes: { 'db.system.name': 'postgresql', 'db.query.text': statement, ...(rows !== undefined ? { 'db.response.returned_rows': rows } : {}) },
  });
  span.end([1_700_000_000, Math.round(durationMs * 1e6)]);
}

function withSpan<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}

function finished(name: string) {
  const span = exporter.getFinishedSpans().find((s) => s.name === name);
  if (span === undefined) throw new Error(`no finished span ${name}`);
  return span;
}

describe('CostSpanProcessor', () => {
  it('attributes queries made under nested internal spans to the root, and skips connect spans', () => {
    const root = tracer.startSpan('GET /users/:id', { kind: SpanKind.SERVER });
    withSpan(root, () => {
      const middleware = tracer.startSpan('middleware');
      withSpan(middleware, () => {
        query('SELECT * FROM users WHERE id = $1', 1, 2.25);
        tracer.startSpan('pg-pool.connect', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql' } }).end();
        query('SELECT * FROM orders WHERE user_id = 1', 2);
        query('SELECT * FROM orders WHERE user_id = 2', 3);
      });
      middleware.end();
    });
    root.end();
    const attributes = finished('GET /users/:id').attributes;
    expect(attributes['cost.db.queries']).toBe(3);
    expect(attributes['cost.db.rows']).toBe(6);
    expect(attributes['cost.db.repeated_count']).toBe(2);
    expect(attributes['cost.db.repeated_statement']).toBe('SELECT * FROM orders WHERE user_id = ?');
    expect(attributes['cost.heap.in_flight']).toBe(1);
    expect(attributes['cost.db.time_ms']).toBe(5.25);
  });

  it('does not count a query that ends after its root ended, nor one outside any root', () => {
    query('SELECT 1 AS outside');
    const root = tracer.startSpan('GET /late', { kind: SpanKind.SERVER });
    const late = withSpan(root, () =>
      tracer.startSpan('pg.query', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT 2' } }),
    );
    withSpan(root, () => query('SELECT 3'));
    root.end();
    late.end();
    withSpan(root, () => query('SELECT 4 AS started_after_end'));
    expect(finished('GET /late').attributes['cost.db.queries']).toBe(1);
    expect(exporter.getFinishedSpans().filter((s) => s.attributes['cost.db.queries'] !== undefined)).toHaveLength(1);
  });

  it("counts enqueues (PRODUCER with messaging.system) as cost.jobs.enqueued, and the queue library's work beneath them as nothing else", () => {
    const root = tracer.startSpan('GET /signup', { kind: SpanKind.SERVER });
    withSpan(root, () => {
      query('SELECT 1 AS own');
      const add = tracer.startSpan('add mail', { kind: SpanKind.PRODUCER, attributes: { 'messaging.system': 'bullmq' } });
      withSpan(add, () => {
        const script = tracer.startSpan('evalsha', {
          kind: SpanKind.CLIENT,
          attributes: { 'db.system.name': 'redis', 'db.query.text': 'evalsha abc 9 bull:mail:wait' },
        });
        withSpan(script, () => query('SELECT 2 AS nested_beneath'));
        script.end();
      });
      add.end();
      const bulk = tracer.startSpan('addBulk mail', {
        kind: SpanKind.PRODUCER,
        attributes: { 'messaging.system': 'bullmq', 'messaging.batch.message_count': 5 },
      });
      bulk.end();
      // BullMQ's own telemetry span: a PRODUCER without messaging.system is no enqueue.
      const own = tracer.startSpan('add mail', { kind: SpanKind.PRODUCER, attributes: { 'bullmq.queue.name': 'mail' } });
      withSpan(own, () => query('SELECT 3 AS under_bare_producer'));
      own.end();
    });
    root.end();
    expect(finished('GET /signup').attributes).toMatchObject({ 'cost.db.queries': 2, 'cost.jobs.enqueued': 6 });
  });

  it('makes a CONSUMER span a root of its own, even inside a request', () => {
    const root = tracer.startSpan('GET /inline', { kind: SpanKind.SERVER });
    withSpan(root, () => {
      query('SELECT 1 AS request');
      const message = tracer.startSpan('mail process', { kind: SpanKind.CONSUMER, attributes: { 'messaging.system': 'rabbitmq' } });
      withSpan(message, () => {
        query('SELECT 1 AS message');
        query('SELECT 2 AS message');
      });
      message.end();
    });
    root.end();
    expect(finished('GET /inline').attributes['cost.db.queries']).toBe(1);
    expect(finished('mail process').attributes['cost.db.queries']).toBe(2);
  });

  it('treats a SERVER span under a local root as part of that request, and a job-marked span as a root', () => {
    const root = tracer.startSpan('GET /outer', { kind: SpanKind.SERVER });
    withSpan(root, () => {
      const inner = tracer.startSpan('GET /inner', { kind: SpanKind.SERVER });
      withSpan(inner, () => query('SELECT 1'));
      inner.end();
    });
    root.end();
    expect(finished('GET /outer').attributes['cost.db.queries']).toBe(1);
    expect(finished('GET /inner').attributes['cost.db.queries']).toBeUndefined();

    const job = tracer.startSpan('job email.send', { attributes: { [ROOT_MARKER_ATTRIBUTE]: true } });
    withSpan(job, () => {
      query('SELECT 1');
      query('SELECT 2');
    });
    job.end();
    expect(finished('job email.send').attributes['cost.db.queries']).toBe(2);
  });

  it('counts overlapping requests in in_flight and lowers the heap confidence', () => {
    const a = tracer.startSpan('A', { kind: SpanKind.SERVER });
    const b = tracer.startSpan('B', { kind: SpanKind.SERVER });
    b.end();
    const c = tracer.startSpan('C', { kind: SpanKind.SERVER });
    a.end();
    c.end();
    const d = tracer.startSpan('D', { kind: SpanKind.SERVER });
    d.end();
    // A overlapped B and C; B overlapped A; C overlapped A; D ran alone.
    expect(finished('A').attributes['cost.heap.in_flight']).toBe(3);
    expect(finished('B').attributes['cost.heap.in_flight']).toBe(2);
    expect(finished('C').attributes['cost.heap.in_flight']).toBe(2);
    expect(finished('D').attributes['cost.heap.in_flight']).toBe(1);
    expect(finished('A').attributes['cost.heap.confidence']).toBe('low');
    expect(costs.inFlight).toBe(0);
  });

  it('stops counting a root that is never ended once its span is garbage-collected', () => {
    // In a process of its own, started with --expose-gc (turning it on later is unsupported).
    const output = execFileSync(process.execPath, ['--expose-gc', join(__dirname, 'fixtures', 'unended-root.cjs')], { encoding: 'utf8' });
    expect(JSON.parse(output)).toEqual({ before: 1, after: 0 });
  });
});
