/**
 * End to end: the test app runs in a child process under
 * `node --require @request-budget/node/register`, against the real PostgreSQL, MariaDB and Redis
 * of this machine, exporting OTLP/protobuf to a receiver in this process. Every assertion is on
 * the cost record as it arrived over the wire.
 */
import { COST_ATTRIBUTE_TYPES } from '@request-budget/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from './support/app-process';
import { concurrently } from './support/http';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver';
import { OtlpSpanKind } from './support/received-span';
import { awaitServerSpan, costOf, tracedGet } from './support/traced-request';

const contract = Object.entries(COST_ATTRIBUTE_TYPES);
const COUNTS = contract.filter(([, type]) => type === 'int').map(([name]) => name);
const DURATIONS = contract.filter(([, type]) => type === 'double').map(([name]) => name);

let receiver: OtlpReceiver;
let app: AppProcess;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  app = await startApp({
    script: 'test/fixtures/cost-app.js',
    env: {
      OTEL_SERVICE_NAME: 'cost-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      // Fewer connections than requests in flight, and queries outside any request beside them.
      PG_POOL_MAX: '3',
      BACKGROUND_INTERVAL_MS: '3',
      // Every request measured for memory, so the memory figures are on every span checked.
      REQUEST_BUDGET_MEMORY_SAMPLE_RATIO: '1',
    },
  });
});

afterAll(async () => {
  await app?.stop();
  await receiver?.close();
});

function attr(span: ReceivedSpan, name: string) {
  return span.attributes[name];
}

describe('the cost record on the server span', () => {
  it('carries every contract attribute with its OTLP type', async () => {
    // The fourth request of a route: its route has a memory estimate from the three before it.
    for (let i = 0; i < 3; i++) await costOf(receiver, `${app.url}/queries/2`);
    const { server } = await costOf(receiver, `${app.url}/queries/2`);
    expect(COUNTS).toHaveLength(13);
    for (const name of COUNTS) expect([name, server.attributeTypes[name]]).toEqual([name, 'int']);
    // The JS SDK sends whole numbers as OTLP ints, so a duration of exactly 0 arrives as int.
    for (const name of DURATIONS) expect(['int', 'double']).toContain(server.attributeTypes[name]);
    for (const [name, type] of contract.filter(([, t]) => t === 'string')) expect([name, server.attributeTypes[name]]).toEqual([name, type]);
    expect(server.resource['service.name']).toBe('cost-app');
  });

  it.each([
    ['/health', 0],
    ['/queries/1', 1],
    ['/queries/3', 3],
    ['/queries/20', 20],
  ])('%s makes exactly %i queries', async (path, queries) => {
    const { server, response } = await costOf(receiver, `${app.url}${path}`);
    expect(response.status).toBe(200);
    expect(attr(server, 'cost.db.queries')).toBe(queries);
    expect(attr(server, 'cost.db.rows')).toBe(queries);
    expect(attr(server, 'cost.db.repeated_count')).toBe(queries);
    expect(attr(server, 'cost.db.repeated_statement')).toBe(queries === 0 ? undefined : 'SELECT $1::int AS i');
    expect(attr(server, 'http.route')).toBe(path === '/health' ? '/health' : '/queries/:n');
  });

  it('weighs the rows: cost.db.bytes, an int, is the sum of the DataRow messages of its queries', async () => {
    const { server, trace } = await costOf(receiver, `${app.url}/queries/20`);
    // SELECT $1::int for 0..19: each row 1 type + 4 length + 2 field count + 4 field length bytes, then 1 or 2 digits.
    expect([attr(server, 'cost.db.bytes'), server.attributeTypes['cost.db.bytes']]).toEqual([20 * 11 + 10 * 1 + 10 * 2, 'int']);
    const perQuery = trace.filter((s) => s.attributes['db.query.text'] === 'SELECT $1::int AS i').map((s) => s.attributes['request_budget.db.response_bytes']);
    expect(perQuery.sort()).toEqual([...Array<number>(10).fill(12), ...Array<number>(10).fill(13)]);
  });

  it('sums the DB time of the query spans it counted', async () => {
    const { server, trace } = await costOf(receiver, `${app.url}/queries/5`);
    const querySpans = trace.filter((s) => s.attributes['db.query.text'] === 'SELECT $1::int AS i');
    expect(querySpans).toHaveLength(5);
    const summedMs = querySpans.reduce((sum, s) => sum + Number(s.endTimeUnixNano - s.startTimeUnixNano) / 1e6, 0);
    expect(attr(server, 'cost.db.time_ms')).toBeCloseTo(summedMs, 2);
  });

  it('counts a failing query', async () => {
    const { server, response } = await costOf(receiver, `${app.url}/fail`);
    expect(response.status).toBe(500);
    expect(attr(server, 'cost.db.queries')).toBe(1);
    expect(attr(server, 'cost.db.rows')).toBe(0);
    expect(attr(server, 'cost.db.repeated_statement')).toBe('SELECT * FROM table_that_does_not_exist');
  });

  it('excludes connection acquisition spans although they carry db.system.name', async () => {
    const { server, trace } = await costOf(receiver, `${app.url}/queries/4`);
    // One pool checkout per query; pg.connect spans appear too when the pool opens a connection.
    const connectSpans = trace.filter((s) => s.name === 'pg-pool.connect');
    expect(connectSpans).toHaveLength(4);
    expect(connectSpans.every((s) => s.attributes['db.system.name'] === 'postgresql')).toBe(true);
    expect(attr(server, 'cost.db.queries')).toBe(4);
  });

  it('attributes to no request a query made outside any, or after the response ended', async () => {
    const request = await tracedGet(`${app.url}/after-response`);
    const spans = await receiver.waitFor((all) => all.some((s) => s.traceId === request.traceId && s.attributes['db.query.text'] === 'SELECT 1 AS late'));
    const { server } = await awaitServerSpan(receiver, request);
    expect(attr(server, 'cost.db.queries')).toBe(0);

    const background = spans.filter((s) => s.attributes['db.query.text'] === 'SELECT $1::text AS background');
    expect(background.length).toBeGreaterThan(0);
    expect(background.every((s) => s.parentSpanId === '')).toBe(true);
    // No request anywhere was charged for a background query.
    const charged = receiver.serverSpans().filter((s) => s.attributes['cost.db.repeated_statement'] === 'SELECT $1::text AS background');
    expect(charged).toEqual([]);
  });
});

describe('concurrency on a pool smaller than the requests in flight, with background queries', () => {
  it('attributes every one of 50 concurrent requests exactly, each with its own query count', async () => {
    // 1..50 in a fixed scrambled order (17 is coprime with 50), so a failure reproduces.
    const counts = Array.from({ length: 50 }, (_, i) => ((i * 17) % 50) + 1);
    const started = await concurrently(50, (i) => tracedGet(`${app.url}/queries/${counts[i]}?yield=1`));
    for (const [i, request] of started.entries()) {
      expect(request.response.status).toBe(200);
      const { server } = await awaitServerSpan(receiver, request);
      expect({
        n: counts[i],
        queries: attr(server, 'cost.db.queries'),
        repeated: attr(server, 'cost.db.repeated_count'),
        rows: attr(server, 'cost.db.rows'),
      }).toEqual({
        n: counts[i],
        queries: counts[i],
        repeated: counts[i],
        rows: counts[i],
      });
    }
  });

  it.each(['callbacks', 'parallel'])('attributes %s-style queries that wait for a pool connection', async (style) => {
    const counts = Array.from({ length: 20 }, (_, i) => i + 2);
    const started = await concurrently(20, (i) => tracedGet(`${app.url}/${style}/${counts[i]}`));
    for (const [i, request] of started.entries()) {
      const { server } = await awaitServerSpan(receiver, request);
      expect([counts[i], attr(server, 'cost.db.queries'), attr(server, 'cost.db.repeated_count')]).toEqual([counts[i], counts[i], counts[i]]);
    }
  });
});

describe('N+1 and rows', () => {
  it('reports 20 identical parameterised statements as repeated_count 20 with the fingerprint', async () => {
    const { server } = await costOf(receiver, `${app.url}/n-plus-one/20`);
    expect(attr(server, 'cost.db.queries')).toBe(21);
    expect(attr(server, 'cost.db.repeated_count')).toBe(20);
    expect(attr(server, 'cost.db.repeated_statement')).toBe('SELECT $1::int AS id, md5($1::text) AS name');
    expect(attr(server, 'cost.db.rows')).toBe(40);
  });

  it('recognises the N+1 when the literals are inlined', async () => {
    const { server } = await costOf(receiver, `${app.url}/n-plus-one-inlined/12`);
    expect(attr(server, 'cost.db.repeated_count')).toBe(12);
    expect(attr(server, 'cost.db.repeated_statement')).toBe('SELECT ? AS id, ? AS name');
  });

  it('counts the 5,000 rows of a query that returns them', async () => {
    const { server } = await costOf(receiver, `${app.url}/rows/5000`);
    expect(attr(server, 'cost.db.queries')).toBe(1);
    expect(attr(server, 'cost.db.rows')).toBe(5000);
  });
});

describe('other drivers', () => {
  it('counts mysql2 queries and their rows', async () => {
    await costOf(receiver, `${app.url}/mysql/1`); // opens the pool's connections
    const { server } = await costOf(receiver, `${app.url}/mysql/3`);
    expect(attr(server, 'cost.db.queries')).toBe(3);
    expect(attr(server, 'cost.db.rows')).toBe(3);
    expect(attr(server, 'cost.db.repeated_statement')).toBe('SELECT ? AS i');
  });

  it('counts ioredis commands', async () => {
    await costOf(receiver, `${app.url}/redis/1`); // the connection handshake is charged to this one
    const { server } = await costOf(receiver, `${app.url}/redis/4`);
    expect(attr(server, 'cost.db.queries')).toBe(4);
    expect(attr(server, 'cost.db.repeated_count')).toBe(4);
    expect(attr(server, 'cost.db.repeated_statement')).toBe('set rb-test:? [? other arguments]');
  });
});

describe('outgoing calls and timeouts', () => {
  it.each([
    ['/fetch', 1],
    ['/fetch?timed=1', 0],
    ['/http?mode=none', 1],
    ['/http?mode=option', 0],
    ['/http?mode=option-unhandled', 1],
    ['/http?mode=settimeout', 0],
    ['/http?mode=signal', 0],
  ])('%s makes one outgoing call, untimed=%i', async (path, untimed) => {
    const { server, trace, response } = await costOf(receiver, `${app.url}${path}`);
    expect(response.status).toBe(200);
    expect(attr(server, 'cost.http_client.calls')).toBe(1);
    expect(attr(server, 'cost.http_client.untimed')).toBe(untimed);
    const client = trace.filter((s) => s.kind === OtlpSpanKind.CLIENT && s.attributes['http.request.method'] === 'GET');
    expect(client).toHaveLength(1);
    expect(client[0].attributes['request_budget.http_client.timed']).toBe(untimed === 0);
    expect(client[0].attributeTypes['request_budget.http_client.timed']).toBe('bool');
    expect(Number(attr(server, 'cost.http_client.time_ms'))).toBeGreaterThan(0);
  });
});
