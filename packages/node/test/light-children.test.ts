import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Context, type HrTime, type Span, type SpanOptions } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { suppressTracing } from '@opentelemetry/core';
import {
  AlwaysOffSampler,
  createAlwaysRecordSampler,
  ParentBasedSampler,
  TracerProvider,
  type ReadableSpan,
  type Span as SdkSpan,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import { MEASUREMENT_ATTRIBUTE, ROOT_MARKER_ATTRIBUTE } from '@request-budget/core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CostSpanProcessor } from '../src/cost-span-processor';
import { lateOperationOf } from '../src/late-operations';
import { startLightChild, useLightChildren } from '../src/light-children';
import { LightSpan, type LightSpanSink } from '../src/light-span';

/** Every span the SDK's processor chain is handed, by hook. */
class CountingProcessor implements SpanProcessor {
  started: SdkSpan[] = [];
  ended: ReadableSpan[] = [];
  onStart(span: SdkSpan): void {
    this.started.push(span);
  }
  onEnd(span: ReadableSpan): void {
    this.ended.push(span);
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const costs = new CostSpanProcessor();
const counting = new CountingProcessor();
// Roots without a parent are dropped by the sampler but recorded, as the pipeline's sampler does;
// a span under a remote sampled parent is sampled.
const provider = new TracerProvider({
  sampler: createAlwaysRecordSampler(new ParentBasedSampler({ root: new AlwaysOffSampler() })),
  spanProcessors: [costs, counting],
});
const tracer = provider.getTracer('app');
const scope = { name: '@opentelemetry/instrumentation-pg', version: '0.77.0' };
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(async () => {
  await provider.shutdown();
  context.disable();
});
beforeEach(() => {
  useLightChildren(true);
  counting.started = [];
  counting.ended = [];
});
afterEach(() => useLightChildren(false));

const START: HrTime = [1_700_000_000, 0];

/** Options of a query span lasting exactly `durationMs` from START (a multiple of 1/4 ms: exact in milliseconds). */
function queryOptions(statement: string, rows: number): SpanOptions {
  return {
    kind: SpanKind.CLIENT,
    startTime: START,
    attributes: { 'db.system.name': 'postgresql', 'db.query.text': statement, 'db.response.returned_rows': rows },
  };
}

function endAfter(span: Span, durationMs: number): void {
  span.end([START[0], durationMs * 1e6]);
}

function under(span: Span): Context {
  return trace.setSpan(ROOT_CONTEXT, span);
}

function unsampledRoot(name = 'GET /orders'): SdkSpan {
  return tracer.startSpan(name, { kind: SpanKind.SERVER }) as SdkSpan;
}

/** A light query under `parent`, ended after `durationMs`. */
function lightQuery(parent: Span, statement: string, rows: number, durationMs: number): Span {
  const span = startLightChild(scope, 'pg.query', queryOptions(statement, rows), under(parent));
  if (span === undefined) throw new Error('expected a light span');
  endAfter(span, durationMs);
  return span;
}

/** The very objects, in order. */
function expectSame(actual: readonly object[], expected: readonly object[]): void {
  expect(actual).toHaveLength(expected.length);
  expected.forEach((span, index) => expect(actual[index]).toBe(span));
}

describe('startLightChild', () => {
  it("attributes an unsampled request's light queries to its root, and the SDK's processor chain never sees them", () => {
    const root = unsampledRoot();
    expect(root.spanContext().traceFlags).toBe(TraceFlags.NONE);
    expect(root.isRecording()).toBe(true);
    const children = [
      lightQuery(root, 'SELECT * FROM orders WHERE user_id = 1', 2, 2.25),
      lightQuery(root, 'SELECT * FROM orders WHERE user_id = 2', 3, 1.5),
      lightQuery(root, 'SELECT * FROM users WHERE id = $1', 1, 3.75),
    ];
    const internal = tracer.startSpan('load cart', {}, under(root));
    const nested = lightQuery(internal, 'SELECT * FROM orders WHERE user_id = 3', 4, 0.5);
    internal.end();
    root.end();

    expect(root.attributes).toMatchObject({
      'cost.db.queries': 4,
      'cost.db.rows': 10,
      'cost.db.time_ms': 8,
      'cost.db.repeated_count': 3,
      'cost.db.repeated_statement': 'SELECT * FROM orders WHERE user_id = ?',
    });
    expectSame(counting.started, [root, internal]);
    expectSame(counting.ended, [internal, root]);
    for (const child of [...children, nested]) expect(child).toBeInstanceOf(LightSpan);
    for (const child of children) {
      expect(child.spanContext()).toEqual(root.spanContext());
      expect(child.spanContext().traceFlags).toBe(TraceFlags.NONE);
    }
    // Under the app's own span too it carries the root's context (the span exported on a breach);
    // its parent is the app's span.
    expect(nested.spanContext()).toEqual(root.spanContext());
    expect((nested as LightSpan).parentSpanContext).toEqual(internal.spanContext());
  });

  it('keeps SDK spans inside an unsampled measurement (measureCost follows calls by span id), and still counts them', () => {
    const measurement = tracer.startSpan('measureCost', { attributes: { [ROOT_MARKER_ATTRIBUTE]: true, [MEASUREMENT_ATTRIBUTE]: true } }) as SdkSpan;
    expect(measurement.spanContext().traceFlags).toBe(TraceFlags.NONE);
    expect(startLightChild(scope, 'pg.query', queryOptions('SELECT 1', 1), under(measurement))).toBeUndefined();
    const query = tracer.startSpan('pg.query', queryOptions('SELECT 1', 1), under(measurement));
    query.end();
    measurement.end();
    expect(measurement.attributes['cost.db.queries']).toBe(1);
  });

  it('is undefined whenever the span must be an SDK span, and a light span otherwise', () => {
    const root = unsampledRoot();
    const inRequest = under(root);
    const light = (options: SpanOptions, parentContext: Context = inRequest) => {
      const span = startLightChild(scope, 'pg.query', options, parentContext);
      span?.end();
      return span;
    };
    const query = queryOptions('SELECT 1', 1);
    // The control: every case below differs from this one in one respect.
    expect(light(query)).toBeInstanceOf(LightSpan);

    useLightChildren(false);
    expect(light(query)).toBeUndefined();
    useLightChildren(true);

    const sampledParent = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
    });
    const sampledRoot = tracer.startSpan('GET /sampled', { kind: SpanKind.SERVER }, sampledParent);
    expect(sampledRoot.spanContext().traceFlags).toBe(TraceFlags.SAMPLED);
    expect(light(query, under(sampledRoot))).toBeUndefined();
    sampledRoot.end();

    expect(light(query, ROOT_CONTEXT)).toBeUndefined();
    expect(light({ ...query, root: true })).toBeUndefined();
    expect(light({ ...query, kind: SpanKind.CONSUMER })).toBeUndefined();
    expect(light({ ...query, attributes: { ...query.attributes, [ROOT_MARKER_ATTRIBUTE]: true } })).toBeUndefined();
    expect(light(query, suppressTracing(inRequest))).toBeUndefined();

    // A SERVER span inside the running request (a nested framework's) is light and attributed to it.
    const server = light({ kind: SpanKind.SERVER });
    expect(server).toBeInstanceOf(LightSpan);
    const nestedServer = startLightChild(scope, 'GET /inner', { kind: SpanKind.SERVER }, inRequest);
    expect(nestedServer).toBeInstanceOf(LightSpan);
    lightQuery(nestedServer!, 'SELECT 2', 5, 1.25);
    nestedServer!.end();
    root.end();
    expect(root.attributes['cost.db.queries']).toBe(2);
    expect(root.attributes['cost.db.rows']).toBe(6);

    // After its request ended, a SERVER span is a new request of its own.
    expect(light({ kind: SpanKind.SERVER })).toBeUndefined();
    expect(counting.started.map((span) => span.name)).toEqual(['GET /orders', 'GET /sampled']);
  });

  it('marks a light span ending after its root as a late operation, hands it to the late listeners, and leaves it out of the record', () => {
    const metrics = new CountingProcessor();
    const summary = new CountingProcessor();
    costs.forwardLateLightSpansTo([metrics, summary]);
    try {
      const root = unsampledRoot('GET /after-response');
      lightQuery(root, 'SELECT 1 AS in_time', 1, 1);
      const late = startLightChild(scope, 'pg.query', queryOptions('SELECT 2 AS late', 7), under(root))!;
      // An SDK span ending late is marked too, but reaches the listeners through the SDK chain, not from here.
      const lateSdk = tracer.startSpan('pg.query', queryOptions('SELECT 3 AS late_sdk', 1), under(root));
      root.end();
      endAfter(late, 4);
      lateSdk.end();

      expect(root.attributes).toMatchObject({ 'cost.db.queries': 1, 'cost.db.rows': 1, 'cost.db.time_ms': 1 });
      expect(lateOperationOf(late as unknown as ReadableSpan)).toEqual({
        root,
        contribution: { type: 'db', statement: 'SELECT 2 AS late', rows: 7 },
      });
      expect(lateOperationOf(lateSdk as unknown as ReadableSpan)?.root).toBe(root);
      expectSame(metrics.ended, [late]);
      expectSame(summary.ended, [late]);
    } finally {
      costs.forwardLateLightSpansTo([]);
    }
  });
});

describe('LightSpan', () => {
  class RecordingSink implements LightSpanSink {
    started: Span[] = [];
    ended: ReadableSpan[] = [];
    onStart(span: Span): void {
      this.started.push(span);
    }
    onEnd(span: ReadableSpan): void {
      this.ended.push(span);
    }
  }

  function lightSpan(sink: LightSpanSink, attributes?: Record<string, string | number>): LightSpan {
    const parent = unsampledRoot('GET /parent');
    parent.end();
    return new LightSpan('pg.query', SpanKind.CLIENT, attributes, START, parent, parent.spanContext(), scope, sink).started(ROOT_CONTEXT);
  }

  it('keeps attribute writes with a value, and none after end', () => {
    const given = { 'db.system.name': 'postgresql' };
    const span = lightSpan(new RecordingSink(), given);
    span.setAttribute('db.query.text', 'SELECT 1');
    span.setAttribute('db.response.returned_rows', undefined);
    span.setAttribute('db.namespace', null);
    span.setAttributes({ 'server.port': 5432, 'server.address': undefined });
    span.end([1_700_000_000, 1_000_000]);
    span.setAttribute('db.response.returned_rows', 3);
    span.setAttributes({ 'db.operation.name': 'SELECT' });
    expect(span.attributes).toEqual({ 'db.system.name': 'postgresql', 'db.query.text': 'SELECT 1', 'server.port': 5432 });
    expect(given).toEqual({ 'db.system.name': 'postgresql' });
  });

  it('takes a new name and status before end only, records until end, and reaches its sink once each way', () => {
    const sink = new RecordingSink();
    const span = lightSpan(sink);
    expectSame(sink.started, [span]);
    expect(span.isRecording()).toBe(true);
    span.updateName('SELECT orders');
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'deadlock' });
    span.end([1_700_000_001, 500_000_000]);
    span.updateName('renamed after end');
    span.setStatus({ code: SpanStatusCode.OK });
    span.end([1_700_000_009, 0]);
    expect(span.name).toBe('SELECT orders');
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'deadlock' });
    expect(span.isRecording()).toBe(false);
    expect(span.ended).toBe(true);
    expectSame(sink.ended, [span]);
    expect(span.startTime).toEqual([1_700_000_000, 0]);
    expect(span.endTime).toEqual([1_700_000_001, 500_000_000]);
    expect(span.duration).toEqual([1, 500_000_000]);
  });

  it('has no duration before it ends', () => {
    const span = lightSpan(new RecordingSink());
    expect(span.duration).toEqual([0, 0]);
    span.end([1_700_000_000, 250_000]);
    expect(span.duration).toEqual([0, 250_000]);
  });
});
