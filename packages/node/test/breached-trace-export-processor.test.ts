import { context, ROOT_CONTEXT, SpanKind, trace, TraceFlags, type Span, type SpanContext } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AlwaysOffSampler,
  createAlwaysRecordSampler,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TracerProvider,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace';
import { BUDGET_BREACHED } from '@request-budget/core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { BreachedTraceExportProcessor, type BreachedTraceExportOptions } from '../src/breached-trace-export-processor';
import { CostSpanProcessor } from '../src/cost-span-processor';
import { startLightChild, useLightChildren } from '../src/light-children';

const contextManager = new AsyncLocalStorageContextManager();
const SAMPLED_PARENT = trace.setSpanContext(ROOT_CONTEXT, {
  traceId: '0af7651916cd43dd8448eb211c80319c',
  spanId: 'b7ad6b7169203331',
  traceFlags: TraceFlags.SAMPLED,
  isRemote: true,
});

let stderr: MockInstance<typeof process.stderr.write>;
let providers: TracerProvider[] = [];

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(() => {
  context.disable();
});
beforeEach(() => {
  stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
});
afterEach(async () => {
  stderr.mockRestore();
  useLightChildren(false);
  await Promise.all(providers.map((provider) => provider.shutdown()));
  providers = [];
});

/** The pipeline's order: cost attribution first, the breached-trace processor last, before a real exporter. */
function pipeline(options?: BreachedTraceExportOptions) {
  const exporter = new InMemorySpanExporter();
  const breached = new BreachedTraceExportProcessor([new SimpleSpanProcessor({ exporter })], options);
  const provider = new TracerProvider({
    sampler: createAlwaysRecordSampler(new ParentBasedSampler({ root: new AlwaysOffSampler() })),
    spanProcessors: [new CostSpanProcessor(), breached],
  });
  providers.push(provider);
  const tracer = provider.getTracer('app');
  return {
    breached,
    tracer,
    async exported(): Promise<ReadableSpan[]> {
      await breached.forceFlush();
      return exporter.getFinishedSpans();
    },
  };
}

type Tracer = ReturnType<typeof pipeline>['tracer'];

function under(span: Span) {
  return trace.setSpan(ROOT_CONTEXT, span);
}

function query(tracer: Tracer, parent: Span, statement: string): Span {
  return tracer.startSpan('pg.query', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': statement } }, under(parent));
}

/** A request with `children` queries (SDK spans), judged breached or not, ended. */
function request(tracer: Tracer, name: string, { breached = true, children = 2, parent = ROOT_CONTEXT } = {}) {
  const root = tracer.startSpan(name, { kind: SpanKind.SERVER }, parent);
  const spans = Array.from({ length: children }, (_, index) => query(tracer, root, `SELECT ${index}`));
  for (const span of spans) span.end();
  // What BudgetSpanProcessor writes on a breached root, in onEnding.
  if (breached) root.setAttribute(BUDGET_BREACHED, true);
  root.end();
  return { root: root as unknown as ReadableSpan, children: spans as unknown as ReadableSpan[] };
}

function sampled(spanContext: SpanContext): SpanContext {
  return { ...spanContext, traceFlags: TraceFlags.SAMPLED };
}

function requestBudgetLines(): string[] {
  return stderr.mock.calls.map(([line]) => String(line)).filter((line) => line.startsWith('request-budget:'));
}

/** Asserts `copy` is a plain copy of `original` marked sampled. */
function expectSampledCopy(copy: ReadableSpan, original: ReadableSpan): void {
  expect(copy).not.toBe(original);
  expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
  expect(copy.spanContext()).toEqual(sampled(original.spanContext()));
  expect(original.spanContext().traceFlags).toBe(TraceFlags.NONE);
  const fields = [
    'name',
    'kind',
    'parentSpanContext',
    'startTime',
    'endTime',
    'status',
    'attributes',
    'links',
    'events',
    'duration',
    'ended',
    'resource',
    'instrumentationScope',
    'droppedAttributesCount',
    'droppedEventsCount',
    'droppedLinksCount',
  ] as const;
  for (const field of fields) expect(copy[field], field).toEqual(original[field]);
}

function byTrace(spans: ReadableSpan[], root: ReadableSpan): ReadableSpan[] {
  return spans.filter((span) => span.spanContext().traceId === root.spanContext().traceId);
}

describe("BreachedTraceExportProcessor, detail 'root'", () => {
  it("exports a breached unsampled request's root alone, as a plain copy marked sampled", async () => {
    useLightChildren(true);
    const { tracer, exported } = pipeline();
    request(tracer, 'GET /within-budget', { breached: false });
    const root = tracer.startSpan('GET /orders', { kind: SpanKind.SERVER });
    const internal = tracer.startSpan('load cart', {}, under(root));
    for (const statement of ['SELECT 1', 'SELECT 2']) {
      startLightChild(
        { name: 'pg' },
        'pg.query',
        { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'db.query.text': statement } },
        under(internal),
      )!.end();
    }
    internal.end();
    root.setAttribute(BUDGET_BREACHED, true);
    root.end();

    const spans = await exported();
    expect(spans).toHaveLength(1);
    expectSampledCopy(spans[0]!, root as unknown as ReadableSpan);
    expect(spans[0]!.attributes).toMatchObject({ [BUDGET_BREACHED]: true, 'cost.db.queries': 2 });
  });

  it('holds no child of an unsampled request even when light spans are off', async () => {
    const { tracer, exported } = pipeline({ detail: 'root' });
    const { root } = request(tracer, 'GET /orders', { children: 3 });
    const spans = await exported();
    expect(spans).toHaveLength(1);
    expectSampledCopy(spans[0]!, root);
  });

  it('passes sampled spans straight through, breached or not', async () => {
    const { tracer, exported } = pipeline();
    const breached = request(tracer, 'GET /sampled-breached', { parent: SAMPLED_PARENT, children: 1 });
    const within = request(tracer, 'GET /sampled', { parent: SAMPLED_PARENT, breached: false, children: 1 });
    const spans = await exported();
    expect(spans).toHaveLength(4);
    expect(spans[0]).toBe(breached.children[0]);
    expect(spans[1]).toBe(breached.root);
    expect(spans[2]).toBe(within.children[0]);
    expect(spans[3]).toBe(within.root);
    expect(spans.every((span) => span.spanContext().traceFlags === TraceFlags.SAMPLED)).toBe(true);
  });
});

describe("BreachedTraceExportProcessor, detail 'trace'", () => {
  const RATE_LINE =
    "request-budget: more breached requests than REQUEST_BUDGET_EXPORT_BREACHED_TRACES_PER_MINUTE (2) wanted their whole trace exported: past that rate, a breached request's root span is exported alone (reported once)\n";

  it('exports whole breached traces up to wholeTracesPerMinute, then roots alone, refilled with the clock', async () => {
    let now = 1_000_000;
    const { breached, tracer, exported } = pipeline({ detail: 'trace', wholeTracesPerMinute: 2, now: () => now });
    const within = request(tracer, 'GET /within-budget', { breached: false });
    const first = request(tracer, 'GET /a');
    const second = request(tracer, 'GET /b');
    const third = request(tracer, 'GET /c');

    let spans = await exported();
    expect(byTrace(spans, within.root)).toEqual([]);
    for (const { root, children } of [first, second]) {
      const whole = byTrace(spans, root);
      expect(whole).toHaveLength(3);
      expectSampledCopy(whole[0]!, children[0]!);
      expectSampledCopy(whole[1]!, children[1]!);
      expectSampledCopy(whole[2]!, root);
      expect(whole[0]!.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    }
    const rootOnly = byTrace(spans, third.root);
    expect(rootOnly).toHaveLength(1);
    expectSampledCopy(rootOnly[0]!, third.root);
    expect(spans).toHaveLength(7);
    expect(breached.rootOnlyTraces).toBe(1);
    expect(requestBudgetLines()).toEqual([RATE_LINE]);

    // Half a minute at 2 a minute: one more whole trace, and the next root alone again, said no more.
    now += 30_000;
    const fourth = request(tracer, 'GET /d');
    const fifth = request(tracer, 'GET /e');
    spans = await exported();
    expect(byTrace(spans, fourth.root)).toHaveLength(3);
    expect(byTrace(spans, fifth.root)).toHaveLength(1);
    expect(spans).toHaveLength(11);
    expect(breached.rootOnlyTraces).toBe(2);
    expect(requestBudgetLines()).toEqual([RATE_LINE]);
    expect(breached.droppedSpans).toBe(0);
  });

  it('counts nothing as dropped for a request within budget, however many spans it had', async () => {
    const { breached, tracer, exported } = pipeline({ detail: 'trace', maxSpansPerTrace: 1 });
    const root = tracer.startSpan('GET /orders', { kind: SpanKind.SERVER });
    for (const statement of ['SELECT 1', 'SELECT 2', 'SELECT 3']) query(tracer, root, statement).end();
    root.setAttribute(BUDGET_BREACHED, false);
    root.end();
    expect(await exported()).toEqual([]);
    expect(breached.droppedSpans).toBe(0);
    expect(requestBudgetLines()).toEqual([]);
  });

  it('holds at most maxSpansPerTrace spans of a request, counting the rest as dropped, and leaves out a span ending after its root', async () => {
    const { breached, tracer, exported } = pipeline({ detail: 'trace', maxSpansPerTrace: 2 });
    const root = tracer.startSpan('GET /orders', { kind: SpanKind.SERVER });
    const children = ['SELECT 1', 'SELECT 2', 'SELECT 3'].map((statement) => query(tracer, root, statement));
    for (const child of children) child.end();
    const late = query(tracer, root, 'SELECT 4 AS late');
    root.setAttribute(BUDGET_BREACHED, true);
    root.end();
    late.end();

    const spans = await exported();
    expect(spans).toHaveLength(3);
    expectSampledCopy(spans[0]!, children[0] as unknown as ReadableSpan);
    expectSampledCopy(spans[1]!, children[1] as unknown as ReadableSpan);
    expectSampledCopy(spans[2]!, root as unknown as ReadableSpan);
    expect(breached.droppedSpans).toBe(1);
    expect(breached.rootOnlyTraces).toBe(0);
    expect(requestBudgetLines()).toEqual([
      'request-budget: a breached request had more than 2 spans: its trace was exported with its first 2 and its root, 1 left out (reported once; counted in droppedSpans)\n',
    ]);
  });
});
