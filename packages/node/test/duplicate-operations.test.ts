/**
 * One operation reported by two spans counts once: nested (an ORM's span over its driver's, an
 * instrumentation active twice) or side by side (two instances of one instrumentation, as two
 * undici instrumentations subscribe to the same channel). In process, with the real processor.
 */
import { context, SpanKind, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { CostSpanProcessor } from '../src/cost-span-processor';
import { markOwnSpans } from '../src/own-spans';

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new CostSpanProcessor(), new SimpleSpanProcessor({ exporter })] });
const contextManager = new AsyncLocalStorageContextManager();
const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);

/** A stand-in for an instrumentation request-budget installed: its tracer is set by markOwnSpans. */
function ownInstrumentation(name: string): { tracer: Tracer } {
  const instrumentation = {
    instrumentationName: name,
    tracer: undefined as unknown as Tracer,
    setTracerProvider(tracerProvider: { getTracer(n: string): Tracer }) {
      instrumentation.tracer = tracerProvider.getTracer(name);
    },
  };
  markOwnSpans([instrumentation as unknown as Instrumentation]);
  return instrumentation;
}

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(provider);
});
afterAll(async () => {
  await provider.shutdown();
  context.disable();
  trace.disable();
});
beforeEach(() => {
  exporter.reset();
  stderr.mockClear();
});

const PG = { 'db.system.name': 'postgresql' };
const app = () => provider.getTracer('app');

function inside<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}

/** Runs `fn` under a fresh server span and returns that span's cost record. */
function request(fn: () => void): Attributes {
  const root = app().startSpan('GET /x', { kind: SpanKind.SERVER });
  inside(root, fn);
  root.end();
  return exporter.getFinishedSpans().find((s) => s.name === 'GET /x')!.attributes;
}

function query(tracer: Tracer, name: string, attributes: Attributes, fn?: () => void, endAttributes: Attributes = {}): Span {
  const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes });
  if (fn) inside(span, fn);
  span.setAttributes(endAttributes);
  span.end();
  return span;
}

function problems(): string[] {
  return stderr.mock.calls.map(([line]) => String(line)).filter((line) => line.startsWith('request-budget:'));
}

describe('nested spans of one operation', () => {
  it('counts a Knex or Prisma statement once: the driver span inside, with its statement and rows', () => {
    const knex = provider.getTracer('@opentelemetry/instrumentation-knex');
    const prisma = provider.getTracer('prisma');
    const pg = provider.getTracer('@opentelemetry/instrumentation-pg');
    const cost = request(() => {
      query(knex, 'first test.items', { ...PG, 'db.query.text': 'select * from items where id = ?' }, () => {
        query(pg, 'pg.query:SELECT test', PG, undefined, { 'db.query.text': 'select * from items where id = $1', 'db.response.returned_rows': 1 });
      });
      const operation = prisma.startSpan('prisma:client:operation');
      inside(operation, () => {
        const transaction = prisma.startSpan('prisma:client:start_transaction');
        inside(transaction, () => query(pg, 'pg.query:BEGIN test', PG, undefined, { 'db.query.text': 'BEGIN', 'db.response.returned_rows': 0 }));
        transaction.end();
        query(prisma, 'prisma:client:db_query', { ...PG, 'db.query.text': 'INSERT INTO t VALUES ($1)' }, () => {
          pg.startSpan('pg-pool.connect', { kind: SpanKind.CLIENT, attributes: PG }).end();
          query(pg, 'pg.query:INSERT test', PG, undefined, { 'db.query.text': 'INSERT INTO t VALUES ($1)', 'db.response.returned_rows': 0 });
        });
      });
      operation.end();
    });
    expect([cost['cost.db.queries'], cost['cost.db.rows'], cost['cost.db.repeated_statement']]).toEqual([3, 1, 'select * from items where id = $1']);
    expect(problems()).toEqual([]);
  });

  it('counts an ORM span alone when it has no driver span inside (Prisma with its own engine)', () => {
    const prisma = provider.getTracer('prisma');
    const cost = request(() => {
      query(prisma, 'prisma:engine:db_query', { 'db.system': 'postgresql', 'db.statement': 'SELECT 1' });
      query(prisma, 'prisma:engine:db_query', { 'db.system': 'postgresql', 'db.statement': 'SELECT 2' });
    });
    expect(cost['cost.db.queries']).toBe(2);
  });

  it('counts the outer span, not the inner one, when the outer ends first', () => {
    const orm = provider.getTracer('orm');
    const pg = provider.getTracer('@opentelemetry/instrumentation-pg');
    const cost = request(() => {
      const outer = orm.startSpan('orm.query', { kind: SpanKind.CLIENT, attributes: { ...PG, 'db.query.text': 'SELECT 1' } });
      const inner = inside(outer, () => pg.startSpan('pg.query', { kind: SpanKind.CLIENT, attributes: PG }));
      outer.end();
      inner.setAttribute('db.query.text', 'SELECT 1');
      inner.end();
    });
    expect(cost['cost.db.queries']).toBe(1);
  });

  it('counts an HTTP call traced twice, nested, once, with the timeout judgement of either span, and says so', () => {
    const http = provider.getTracer('@opentelemetry/instrumentation-http');
    const call = (url: string, timed: boolean) =>
      query(http, 'GET', { 'http.request.method': 'GET', 'url.full': url, 'request_budget.http_client.timed': timed }, () => {
        query(http, 'GET', { 'http.request.method': 'GET', 'url.full': url });
      });
    const cost = request(() => {
      call('http://upstream/a', false);
      call('http://upstream/b', true);
    });
    expect([cost['cost.http_client.calls'], cost['cost.http_client.untimed']]).toEqual([2, 1]);
    expect(problems()).toEqual([expect.stringContaining('@opentelemetry/instrumentation-http is active twice')]);
  });

  it('keeps apart what only looks nested: a call to another URL inside a call, a redis command inside a query', () => {
    const http = provider.getTracer('http-client');
    const cost = request(() => {
      query(http, 'GET', { 'http.request.method': 'GET', 'url.full': 'http://upstream/a' }, () => {
        query(http, 'GET', { 'http.request.method': 'GET', 'url.full': 'http://upstream/redirected' });
      });
      query(provider.getTracer('pg'), 'pg.query', { ...PG, 'db.query.text': 'SELECT 1' }, () => {
        query(provider.getTracer('redis'), 'get', { 'db.system.name': 'redis', 'db.query.text': 'get k' });
      });
    });
    expect([cost['cost.http_client.calls'], cost['cost.db.queries']]).toEqual([2, 2]);
  });
});

describe('side by side: two instances of one instrumentation', () => {
  const UNDICI = '@opentelemetry/instrumentation-undici';
  const own = ownInstrumentation(UNDICI);
  const foreign = () => provider.getTracer(UNDICI);
  const fetchSpan = (tracer: Tracer, url: string, timed?: boolean) =>
    tracer.startSpan('GET', {
      kind: SpanKind.CLIENT,
      attributes: { 'http.request.method': 'GET', 'url.full': url, ...(timed === undefined ? {} : { 'request_budget.http_client.timed': timed }) },
    });

  it('counts the own span of each call whichever starts first, even for two calls to one URL in one turn', () => {
    const cost = request(() => {
      // As one diagnostics-channel publish per call calls both subscribers in turn.
      const spans = [
        fetchSpan(foreign(), 'http://u/1'),
        fetchSpan(own.tracer, 'http://u/1', false),
        fetchSpan(own.tracer, 'http://u/1', true),
        fetchSpan(foreign(), 'http://u/1'),
      ];
      for (const span of spans) span.end();
    });
    expect([cost['cost.http_client.calls'], cost['cost.http_client.untimed']]).toEqual([2, 1]);
    expect(problems()).toEqual([expect.stringContaining(`${UNDICI} is registered twice`)]);
  });

  it('counts calls to one URL made by one instance in one turn, each', () => {
    const cost = request(() => {
      for (const span of [fetchSpan(own.tracer, 'http://u/1', true), fetchSpan(own.tracer, 'http://u/1', true), fetchSpan(foreign(), 'http://u/2')]) span.end();
    });
    expect(cost['cost.http_client.calls']).toBe(3);
  });

  it('counts another instance that replaced the own one, and says so once', async () => {
    const pgOwn = ownInstrumentation('@opentelemetry/instrumentation-pg');
    expect(pgOwn.tracer).toBeDefined();
    const cost = request(() => {
      query(provider.getTracer('@opentelemetry/instrumentation-pg'), 'pg.query', PG, undefined, {
        'db.query.text': 'SELECT 1',
        'db.response.returned_rows': 1,
      });
      query(provider.getTracer('@opentelemetry/instrumentation-pg'), 'pg.query', PG, undefined, {
        'db.query.text': 'SELECT 1',
        'db.response.returned_rows': 1,
      });
    });
    await Promise.resolve();
    expect([cost['cost.db.queries'], cost['cost.db.rows']]).toEqual([2, 2]);
    expect(problems()).toEqual([expect.stringContaining("request-budget's @opentelemetry/instrumentation-pg was replaced by another instance")]);
  });
});

describe('memory', () => {
  it('remembers a bounded number of operation spans, however long a synchronous loop of them', async () => {
    const { DuplicateOperations } = await import('../src/duplicate-operations');
    const duplicates = new DuplicateOperations();
    const tracer = app();
    const root = tracer.startSpan('GET /loop', { kind: SpanKind.SERVER });
    let most = 0;
    // 10,000 distinct statements in one turn (a long synchronous loop), none of them twins.
    for (let i = 0; i < 10_000; i += 1) {
      const span = tracer.startSpan(`SELECT ${i}`, { kind: SpanKind.CLIENT, attributes: { ...PG, 'db.query.text': `SELECT ${i}` } });
      duplicates.onStart(span as never, 'client', root);
      most = Math.max(most, duplicates.rememberedForTwins);
      span.end();
    }
    root.end();
    expect(most).toBe(16);
  });
});
