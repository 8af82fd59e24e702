/**
 * Memory attribution on a real SDK: requests interleaved on the event loop each get the bytes
 * their own code allocated, a collection inside a request is added back once its entry arrives,
 * and a callback bound to a request's context is charged to that request wherever it runs.
 * Allocations are arrays of 32,768 small integers (256 KiB of elements each): large objects,
 * the same size whichever space V8 puts them in.
 */
import { context, ROOT_CONTEXT, SpanKind, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CostSpanProcessor, ROOT_MARKER_ATTRIBUTE } from '../src/cost-span-processor';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const KiB = 1024;
const ARRAY_BYTES = 256 * KiB;
/**
 * How far a route's mean may stray from the arrays its requests allocated: their own small
 * allocations (closures, promises), and V8's own work between readings — compiling hot code,
 * finishing a collection's sweeping — which lands on whichever request runs at the time. Far
 * below one request's bytes leaking into another's (here 2 MiB and 8 MiB).
 */
const TOLERANCE = 320 * KiB;
/** The same for a single request: V8's own work can add a few hundred KiB to one of them. */
const ONE_REQUEST_TOLERANCE = 2 * TOLERANCE;

const exporter = new InMemorySpanExporter();
const costs = new CostSpanProcessor({ memoryEstimates: { minRequests: 1 }, memorySampling: { ratio: 1 } });
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

const kept: unknown[] = [];
function allocate(arrays: number): void {
  for (let index = 0; index < arrays; index++) kept.push(new Array(32768).fill(index));
}
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

function startRequest(route: string): Span {
  return tracer.startSpan(`GET ${route}`, { kind: SpanKind.SERVER, attributes: { 'http.request.method': 'GET', 'http.route': route } });
}

function attributesOf(span: Span) {
  const finished = exporter.getFinishedSpans().find((candidate) => candidate.spanContext().spanId === span.spanContext().spanId);
  if (finished === undefined) throw new Error('span not finished');
  return finished.attributes;
}

/** Runs `steps` stretches in the request's context, each allocating `arrays` arrays, a turn of the event loop apart. */
async function work(span: Span, arrays: number, steps: number): Promise<void> {
  await context.with(trace.setSpan(context.active(), span), async () => {
    for (let step = 0; step < steps; step++) {
      await nextTurn();
      allocate(arrays);
    }
  });
}

describe('memory attribution', () => {
  it('gives each of several interleaved requests the bytes its own code allocated', async () => {
    // Six rounds of three requests interleaved turn by turn, each route's requests alike.
    const routes = [
      { route: '/a', arrays: 1 },
      { route: '/b', arrays: 4 },
      { route: '/c', arrays: 0 },
    ];
    const steps = 8;
    // A first round unchecked: running code for the first time compiles it, on the heap too.
    for (let round = -1; round < 6; round++) {
      kept.length = 0;
      const requests = routes.map(({ route, arrays }) => ({ arrays, span: startRequest(route) }));
      await Promise.all(requests.map(({ span, arrays }) => work(span, arrays, steps)));
      for (const { span } of requests) span.end();
      // At its end a lower bound (a collection in a stretch cuts it until its record arrives), and
      // never another request's bytes: /b's 8 MiB leaking into /a or /c would be megabytes.
      if (round < 0) continue;
      for (const { span, arrays } of requests)
        expect(attributesOf(span)['cost.memory.allocated_bytes']).toBeLessThanOrEqual(arrays * steps * ARRAY_BYTES + ONE_REQUEST_TOLERANCE);
    }
    kept.length = 0;
    await settle();
    // With every collection's record in, each route's estimate is its requests' bytes.
    for (const { route, arrays } of routes) {
      const probe = startRequest(route);
      probe.end();
      const estimate = attributesOf(probe)['cost.memory.route_estimate_bytes'] as number;
      expect({ route, estimate }).toEqual({
        route,
        estimate: expect.toSatisfy((value: number) => Math.abs(value - arrays * steps * ARRAY_BYTES) <= TOLERANCE),
      });
    }
  });

  it('adds back what a collection inside a request freed, once its record arrives, to the route estimate', async () => {
    for (let round = 0; round < 4; round++) {
      kept.length = 0;
      // 8 MiB of garbage made outside any request, collected inside one.
      let garbage: unknown[] | undefined = Array.from({ length: 32 }, () => new Array(32768).fill(1));
      expect(garbage).toHaveLength(32);
      garbage = undefined;
      const request = startRequest('/gc');
      context.with(trace.setSpan(context.active(), request), () => {
        allocate(8); // 2 MiB, kept
        collectGarbage(); // frees the 8 MiB: the heap ends lower than the request found it
        allocate(4); // 1 MiB more
      });
      request.end();
      // Known at its end: its growth, cut below zero by the collection, so none.
      expect(attributesOf(request)['cost.memory.allocated_bytes']).toBe(0);
    }
    kept.length = 0;
    await settle();
    const probe = startRequest('/gc');
    probe.end();
    // The route's estimate: its requests' 3 MiB in full, the collections' freed bytes added back
    // (without them, 0). A full collection's concurrent sweeping moves the heap after it by a few
    // hundred KiB more, on whoever runs then.
    const estimate = attributesOf(probe)['cost.memory.route_estimate_bytes'] as number;
    expect(Math.abs(estimate - 12 * ARRAY_BYTES)).toBeLessThanOrEqual(2 * TOLERANCE);
  });

  it('charges a callback bound to a request to that request, wherever it runs', async () => {
    kept.length = 0;
    const owner = startRequest('/owner');
    const host = startRequest('/host');
    const bound = context.bind(trace.setSpan(context.active(), owner), () => allocate(8));
    await context.with(trace.setSpan(context.active(), host), async () => {
      await nextTurn();
      allocate(1);
      bound(); // runs in the host's stretch, in the owner's context
      allocate(1);
    });
    owner.end();
    host.end();
    const ownerBytes = attributesOf(owner)['cost.memory.allocated_bytes'] as number;
    const hostBytes = attributesOf(host)['cost.memory.allocated_bytes'] as number;
    // The owner's 2 MiB and the host's 512 KiB, not the other way round nor all to the host.
    expect(ownerBytes).toBeGreaterThanOrEqual(8 * ARRAY_BYTES - ONE_REQUEST_TOLERANCE);
    expect(ownerBytes).toBeLessThanOrEqual(8 * ARRAY_BYTES + ONE_REQUEST_TOLERANCE);
    expect(hostBytes).toBeLessThanOrEqual(2 * ARRAY_BYTES + ONE_REQUEST_TOLERANCE);
    kept.length = 0;
  });

  it('leaves a request its own stretch after a job root it started inside it ended', () => {
    for (let round = 0; round < 2; round++) {
      kept.length = 0;
      const request = startRequest('/starts-job');
      let job: Span | undefined;
      context.with(trace.setSpan(context.active(), request), () => {
        tracer.startActiveSpan('job report', { attributes: { [ROOT_MARKER_ATTRIBUTE]: true } }, (span) => {
          job = span;
          allocate(1);
          span.end();
        });
        allocate(8); // the request's own, after the job: neither the job's nor no one's
      });
      request.end();
      if (round === 0) continue; // first run compiles
      const requestBytes = attributesOf(request)['cost.memory.allocated_bytes'] as number;
      const jobBytes = attributesOf(job!)['cost.memory.allocated_bytes'] as number;
      expect(Math.abs(requestBytes - 8 * ARRAY_BYTES)).toBeLessThanOrEqual(ONE_REQUEST_TOLERANCE);
      expect(Math.abs(jobBytes - ARRAY_BYTES)).toBeLessThanOrEqual(ONE_REQUEST_TOLERANCE);
    }
    kept.length = 0;
  });

  it('charges nothing to a request once it ended, though the code that ended it goes on', async () => {
    for (let round = 0; round < 3; round++) {
      kept.length = 0;
      const request = startRequest('/ends-early');
      context.with(trace.setSpan(context.active(), request), () => {
        allocate(4);
        context.with(ROOT_CONTEXT, () => request.end());
        // After its end: 8 MiB of garbage collected where its code runs on, not its route's.
        let garbage: unknown[] | undefined = Array.from({ length: 32 }, () => new Array(32768).fill(1));
        expect(garbage).toHaveLength(32);
        garbage = undefined;
        collectGarbage();
      });
    }
    kept.length = 0;
    await settle();
    const probe = startRequest('/ends-early');
    probe.end();
    const estimate = attributesOf(probe)['cost.memory.route_estimate_bytes'] as number;
    expect(Math.abs(estimate - 4 * ARRAY_BYTES)).toBeLessThanOrEqual(2 * TOLERANCE);
  });

  it('never throws from context.with where the context manager would not', () => {
    const request = startRequest('/bad-context');
    // A caller passing no context: the manager runs the callback; so must the wrapper.
    const withAnything = context.with.bind(context) as unknown as (active: unknown, fn: () => number) => number;
    expect(withAnything(undefined, () => 7)).toBe(7);
    request.end();
  });

  it('writes no memory figure when turned off', () => {
    const off = new CostSpanProcessor({ memoryAttribution: false });
    const offExporter = new InMemorySpanExporter();
    const offProvider = new TracerProvider({ spanProcessors: [off, new SimpleSpanProcessor({ exporter: offExporter })] });
    const span = offProvider.getTracer('off').startSpan('GET /off', { kind: SpanKind.SERVER });
    span.end();
    const attributes = offExporter.getFinishedSpans()[0]!.attributes;
    expect(attributes['cost.db.queries']).toBe(0);
    expect(Object.keys(attributes).filter((key) => key.startsWith('cost.memory.'))).toEqual([]);
  });
});

describe('sampling windows', () => {
  it('measures requests that start in a window, and gives every request its route estimate', async () => {
    // Windows of 100 ms every 400 ms, timed from the processor's start (its first window opens
    // then), each step far from a window's edge; a request measured only if it ends in its window.
    const startedAt = performance.now();
    const windowed = new CostSpanProcessor({ memoryEstimates: { minRequests: 1 }, memorySampling: { ratio: 0.25, windowMs: 100, maxWindowMs: 100 } });
    const windowedExporter = new InMemorySpanExporter();
    const windowedProvider = new TracerProvider({ spanProcessors: [windowed, new SimpleSpanProcessor({ exporter: windowedExporter })] });
    const windowedTracer = windowedProvider.getTracer('windowed');
    const startW = () => windowedTracer.startSpan('GET /w', { kind: SpanKind.SERVER, attributes: { 'http.request.method': 'GET', 'http.route': '/w' } });
    const request = (fn: () => void) => {
      const span = startW();
      context.with(trace.setSpan(context.active(), span), fn);
      span.end();
      return windowedExporter.getFinishedSpans().at(-1)!.attributes;
    };
    const at = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, startedAt + ms - performance.now())));
    try {
      kept.length = 0;
      // The first window opens at start: measured (no timer closes it while a request runs synchronously).
      const measured = request(() => allocate(4));
      expect(Math.abs((measured['cost.memory.allocated_bytes'] as number) - 4 * ARRAY_BYTES)).toBeLessThanOrEqual(ONE_REQUEST_TOLERANCE);
      expect(measured['cost.memory.route_estimate_bytes']).toBeUndefined();
      // Between windows (the next opens at 400 ms): not measured, judged on the estimate the measured one left.
      await at(200);
      const between = request(() => allocate(4));
      expect(between['cost.memory.allocated_bytes']).toBeUndefined();
      expect(Math.abs((between['cost.memory.route_estimate_bytes'] as number) - 4 * ARRAY_BYTES)).toBeLessThanOrEqual(ONE_REQUEST_TOLERANCE);
      // In the second window: a request measured, and one started beside it that the window closes
      // under is not: a partial figure is no figure.
      await at(430);
      const inWindow = request(() => allocate(1));
      const span = startW();
      expect(Math.abs((inWindow['cost.memory.allocated_bytes'] as number) - ARRAY_BYTES)).toBeLessThanOrEqual(ONE_REQUEST_TOLERANCE);
      await at(700);
      span.end();
      expect(windowedExporter.getFinishedSpans().at(-1)!.attributes['cost.memory.allocated_bytes']).toBeUndefined();
      kept.length = 0;
    } finally {
      await windowedProvider.shutdown();
    }
  });
});
