/**
 * End to end over Zipkin: the app runs under --require with OTEL_TRACES_EXPORTER=zipkin, and its
 * cost and budget marks must arrive as Zipkin v2 JSON that passes the official API contract
 * (checked by the receiver on every payload), rendered the way the Zipkin exporter renders them.
 */
import { COST_ATTRIBUTE_TYPES, OPTIONAL_COST_ATTRIBUTES } from '@request-budget/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from './support/app-process';
import { tracedGet, type TracedRequest } from './support/traced-request';
import { startZipkinReceiver, type ZipkinReceiver, type ZipkinSpan } from './support/zipkin-receiver';

let receiver: ZipkinReceiver;
let app: AppProcess;

beforeAll(async () => {
  receiver = await startZipkinReceiver();
  app = await startApp({
    script: 'test/fixtures/cost-app.js',
    env: {
      OTEL_SERVICE_NAME: 'cost-app',
      OTEL_TRACES_EXPORTER: 'zipkin',
      OTEL_EXPORTER_ZIPKIN_ENDPOINT: receiver.spansUrl,
      OTEL_BSP_SCHEDULE_DELAY: '50',
      REQUEST_BUDGET_FILE: 'test/fixtures/budgets.yaml',
    },
  });
});
afterAll(async () => {
  await app?.stop();
  await receiver?.close();
});

/** GET `path` with a traceparent the test chose, and return the app's SERVER span for it and its trace. */
async function zipkinTraceOf(path: string): Promise<{ request: TracedRequest; server: ZipkinSpan; trace: ZipkinSpan[] }> {
  const request = await tracedGet(`${app.url}${path}`);
  expect(request.response.status).toBe(200);
  const isIt = (s: ZipkinSpan) => s.traceId === request.traceId && s.kind === 'SERVER' && s.parentId === request.parentSpanId;
  const spans = await receiver.waitFor((all) => all.some(isIt), { timeoutMs: 10_000 });
  return { request, server: spans.find(isIt)!, trace: spans.filter((s) => s.traceId === request.traceId) };
}

const costTags = (span: ZipkinSpan) => Object.fromEntries(Object.entries(span.tags ?? {}).filter(([key]) => key.startsWith('cost.')));
// A JS number through String(): no exponent, no trailing zeros, no quotes.
const DECIMAL = /^(0|[1-9]\d*)(\.\d*[1-9])?$/;
const INTEGER = /^-?(0|[1-9]\d*)$/;

/**
 * The cost tags of a request that ran alone, with no outgoing calls: counts exact, measured
 * figures in their rendered form, and the heap confidence that follows from the GC figures.
 */
function expectCostTags(span: ZipkinSpan, counts: { queries: number; rows: number; repeated: number; statement: string }): void {
  const tags = costTags(span);
  // Every attribute of the contract (those a record may lack aside), nothing else, each as a Zipkin string.
  const contract = Object.keys(COST_ATTRIBUTE_TYPES);
  expect(Object.keys(tags).filter((key) => !contract.includes(key))).toEqual([]);
  expect(Object.keys(tags).sort()).toEqual(expect.arrayContaining(contract.filter((key) => !OPTIONAL_COST_ATTRIBUTES.has(key)).sort()));
  const optional = Object.fromEntries(
    Object.keys(tags)
      .filter((key) => OPTIONAL_COST_ATTRIBUTES.has(key))
      .map((key) => [key, expect.stringMatching(INTEGER)]),
  );
  // cost.db.bytes is always there: pg reports the bytes of the rows.
  expect(optional).toHaveProperty(['cost.db.bytes']);
  expect(tags).toEqual({
    ...optional,
    'cost.db.queries': String(counts.queries),
    'cost.db.rows': String(counts.rows),
    'cost.db.repeated_count': String(counts.repeated),
    'cost.db.repeated_statement': counts.statement,
    'cost.db.time_ms': expect.stringMatching(DECIMAL),
    'cost.http_client.calls': '0',
    'cost.http_client.time_ms': '0',
    'cost.http_client.untimed': '0',
    'cost.jobs.enqueued': '0',
    'cost.heap.delta_bytes': expect.stringMatching(INTEGER),
    'cost.heap.in_flight': '1',
    // A GC entry or a shrinking heap means medium; with neither, a full GC can still have been
    // seen synchronously (its entry arrives later), so high or medium.
    'cost.heap.confidence': tags['cost.gc.count'] !== '0' || Number(tags['cost.heap.delta_bytes']) < 0 ? 'medium' : expect.stringMatching(/^(high|medium)$/),
    'cost.gc.count': expect.stringMatching(INTEGER),
    'cost.gc.time_ms': expect.stringMatching(DECIMAL),
  });
  if (tags['cost.gc.count'] === '0') expect(tags['cost.gc.time_ms']).toBe('0');
  // DB time is part of the request's time (tags in ms, duration in µs).
  expect(Number(tags['cost.db.time_ms'])).toBeGreaterThan(0);
  expect(Number(tags['cost.db.time_ms']) * 1000).toBeLessThanOrEqual(span.duration!);
}

/** The Zipkin envelope of a server span of cost-app for `request`. */
function expectServerSpan(span: ZipkinSpan, request: TracedRequest, name: string, path: string, route: string): void {
  expect(span).toMatchObject({ traceId: request.traceId, parentId: request.parentSpanId, kind: 'SERVER', name });
  expect(span.id).toMatch(/^[0-9a-f]{16}$/);
  expect(span.localEndpoint).toEqual({ serviceName: 'cost-app' });
  expect('remoteEndpoint' in span).toBe(false);
  expect(Number.isInteger(span.timestamp)).toBe(true);
  expect(Number.isInteger(span.duration)).toBe(true);
  expect(span.tags).toMatchObject({
    'http.request.method': 'GET',
    'http.route': route,
    'url.path': path,
    'http.response.status_code': '200',
    'service.name': 'cost-app',
  });
  // No ERROR status without REQUEST_BUDGET_ERROR_ON_CRITICAL, so no status tags.
  expect(span.tags!['otel.status_code']).toBeUndefined();
  expect(span.tags!.error).toBeUndefined();
}

/**
 * One `budget.breach` annotation per violation: the value is the bare event name. The events are
 * added in onEnding, after the span's end time is fixed, so they sit at or just after its end.
 */
function expectBreachAnnotations(span: ZipkinSpan, count: number): void {
  expect(span.annotations).toEqual(Array.from({ length: count }, () => ({ timestamp: expect.any(Number), value: 'budget.breach' })));
  const end = span.timestamp! + span.duration!;
  let previous = 0;
  for (const { timestamp } of span.annotations!) {
    expect(Number.isInteger(timestamp)).toBe(true);
    // -1: the exporter rounds the annotation time and the duration separately.
    expect(timestamp).toBeGreaterThanOrEqual(end - 1);
    expect(timestamp).toBeLessThanOrEqual(Date.now() * 1000);
    expect(timestamp).toBeGreaterThan(previous);
    previous = timestamp;
  }
}

describe('cost and budget marks exported to Zipkin', () => {
  it('renders a breach as string tags and a budget.breach annotation, a pass as breached "false" with no annotation', async () => {
    const over = await zipkinTraceOf('/queries/12');
    expectServerSpan(over.server, over.request, 'GET /queries/:n', '/queries/12', '/queries/:n');
    expect(over.server.tags!['budget.rule']).toBe('GET /queries/:n');
    expect(over.server.tags!['budget.breached']).toBe('true');
    expect(over.server.tags!['budget.violations']).toBe('db.queries 12>10');
    expectCostTags(over.server, { queries: 12, rows: 12, repeated: 12, statement: 'SELECT $1::int AS i' });
    expectBreachAnnotations(over.server, 1);
    // The request's 12 query spans came through the contract too, in the same trace.
    expect(over.trace.filter((s) => s.tags?.['db.query.text'] === 'SELECT $1::int AS i')).toHaveLength(12);

    const within = await zipkinTraceOf('/queries/3');
    expectServerSpan(within.server, within.request, 'GET /queries/:n', '/queries/3', '/queries/:n');
    expect(within.server.tags!['budget.rule']).toBe('GET /queries/:n');
    expect(within.server.tags!['budget.breached']).toBe('false');
    expect(within.server.tags!['budget.violations']).toBeUndefined();
    expectCostTags(within.server, { queries: 3, rows: 3, repeated: 3, statement: 'SELECT $1::int AS i' });
    // The exporter leaves `annotations` out entirely when a span has no events.
    expect('annotations' in within.server).toBe(false);

    const nPlusOne = await zipkinTraceOf('/n-plus-one/8');
    expectServerSpan(nPlusOne.server, nPlusOne.request, 'GET /n-plus-one/:n', '/n-plus-one/8', '/n-plus-one/:n');
    expect(nPlusOne.server.tags!['budget.rule']).toBe('GET /n-plus-one/:n');
    expect(nPlusOne.server.tags!['budget.breached']).toBe('true');
    expect(nPlusOne.server.tags!['budget.violations']).toBe('db.repeated_count 8>5');
    // 1 query for the ids (8 rows), then 8 queries of one row each.
    expectCostTags(nPlusOne.server, { queries: 9, rows: 16, repeated: 8, statement: 'SELECT $1::int AS id, md5($1::text) AS name' });
    expectBreachAnnotations(nPlusOne.server, 1);

    expect(receiver.rejections).toEqual([]);
  });

  it('renders several violations as one comma-joined string and one annotation each', async () => {
    // Over the default 50 queries and the route's 5 repeats at once.
    const { request, server } = await zipkinTraceOf('/n-plus-one/60');
    expectServerSpan(server, request, 'GET /n-plus-one/:n', '/n-plus-one/60', '/n-plus-one/:n');
    expect(server.tags!['budget.breached']).toBe('true');
    // String(['a', 'b']): joined with a bare comma, no brackets, no quotes, no space.
    expect(server.tags!['budget.violations']).toBe('db.queries 61>50,db.repeated_count 60>5');
    expectCostTags(server, { queries: 61, rows: 120, repeated: 60, statement: 'SELECT $1::int AS id, md5($1::text) AS name' });
    expectBreachAnnotations(server, 2);
    expect(receiver.rejections).toEqual([]);
  });

  it('sent only payloads that pass the Zipkin v2 contract, up to the flush on shutdown', async () => {
    const accepted = receiver.spans.length;
    await app.stop();
    expect(receiver.spans.length).toBeGreaterThanOrEqual(accepted);
    expect(receiver.rejections).toEqual([]);
  });
});
