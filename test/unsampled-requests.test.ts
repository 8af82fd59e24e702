/**
 * Requests the sampler dropped (a parent-based sampler under a `traceparent` with flags 00): each
 * is still measured and judged, its queries and calls are light spans (never SDK spans), and a
 * breached one is exported as its root span alone — or, opted in, as its whole trace, at most
 * so many a minute. Budgets under which every request breaches make every root exported, so each
 * cost record can be read at the receiver and checked against what PostgreSQL ran.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from './support/app-process';
import { pgTruth, type PgTruth } from './support/db-truth';
import { concurrently } from './support/http';
import { OtlpSpanKind } from './support/received-span';
import { useReceiverAndApps } from './support/receiver-and-apps';
import { awaitServerSpan, tracedGet, type TracedRequest } from './support/traced-request';

const { receiver, apps } = useReceiverAndApps();
let truth: PgTruth;
let upstream: http.Server;
const upstreamTraceparents: string[] = [];

beforeAll(async () => {
  truth = await pgTruth('rb_unsampled');
  upstream = http.createServer((req, res) => {
    upstreamTraceparents.push(String(req.headers.traceparent));
    res.end('upstream');
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  await truth?.close();
  await new Promise((resolve) => upstream?.close(resolve));
});

async function launch(env: Record<string, string> = {}): Promise<AppProcess> {
  const app = await startApp({
    script: 'test/fixtures/cost-app.js',
    env: {
      OTEL_SERVICE_NAME: 'unsampled-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '50',
      OTEL_TRACES_SAMPLER: 'parentbased_always_on',
      REQUEST_BUDGET_FILE: 'test/fixtures/every-request-breaches.yaml',
      REQUEST_BUDGET_ALERT_LOG: 'false',
      DATABASE_URL: truth.url,
      PG_POOL_MAX: '3',
      BACKGROUND_INTERVAL_MS: '3',
      UPSTREAM_URL: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`,
      ...env,
    },
  });
  apps.push(app);
  return app;
}

const unsampled = (url: string) => tracedGet(url, { sampled: false });

describe('unsampled requests', () => {
  it('30 in flight on a pool of 3 beside background queries: every cost record exact, their sum what PostgreSQL ran, each exported as its root alone', async () => {
    const app = await launch();
    const counts = Array.from({ length: 30 }, (_, i) => (i * 7) % 13);
    let sent: TracedRequest[] = [];
    const delta = await truth.during(async () => {
      sent = await concurrently(30, (i) => unsampled(`${app.url}/queries/${counts[i]}?yield=1`));
    });
    const records = [];
    for (const request of sent) {
      expect(request.response.status).toBe(200);
      const { server, trace } = await awaitServerSpan(receiver, request);
      // The root alone, under the trace id and parent the request came with, marked breached.
      expect(trace).toEqual([server]);
      expect([server.traceId, server.parentSpanId, server.kind, server.name]).toEqual([
        request.traceId,
        request.parentSpanId,
        OtlpSpanKind.SERVER,
        'GET /queries/:n',
      ]);
      expect(server.attributes['budget.breached']).toBe(true);
      records.push({ queries: server.attributes['cost.db.queries'], rows: server.attributes['cost.db.rows'] });
    }
    expect(records).toEqual(counts.map((n) => ({ queries: n, rows: n })));
    const background = delta.byStatement.get('SELECT $1::text AS background')?.calls ?? 0;
    expect(background).toBeGreaterThan(0);
    expect(delta.statements - background).toBe(counts.reduce((sum, n) => sum + n, 0));
  });

  it('one request at a time: each cost record is what PostgreSQL ran for it', async () => {
    const app = await launch();
    for (const n of [0, 1, 4, 9]) {
      let request: TracedRequest | undefined;
      const delta = await truth.during(async () => {
        request = await unsampled(`${app.url}/queries/${n}`);
      });
      const { server } = await awaitServerSpan(receiver, request!);
      const background = delta.byStatement.get('SELECT $1::text AS background')?.calls ?? 0;
      expect([n, server.attributes['cost.db.queries'], server.attributes['cost.db.rows']]).toEqual([n, delta.statements - background, delta.rows - background]);
      expect(server.attributes['cost.db.queries']).toBe(n);
    }
  });

  it('keeps the N+1 judgement: repeated count, fingerprint, violations and breach events on the exported root', async () => {
    const app = await launch();
    const request = await unsampled(`${app.url}/n-plus-one/8`);
    const { server } = await awaitServerSpan(receiver, request);
    expect(server.attributes['cost.db.queries']).toBe(9);
    expect(server.attributes['cost.db.repeated_count']).toBe(8);
    expect(server.attributes['cost.db.repeated_statement']).toBe('SELECT $1::int AS id, md5($1::text) AS name');
    expect(server.attributes['budget.violations']).toEqual(['db.repeated_count 8>5', expect.stringMatching(/^duration_ms [\d.]+>0$/)]);
    expect(server.events.map((e) => [e.name, e.attributes.metric, e.attributes.value])).toEqual([
      ['budget.breach', 'db.repeated_count', 8],
      ['budget.breach', 'duration_ms', expect.any(Number)],
    ]);
  });

  it('an outgoing call carries the trace id and the span id of the root that is exported, unsampled', async () => {
    const app = await launch();
    upstreamTraceparents.length = 0;
    const request = await unsampled(`${app.url}/fetch?timed=1`);
    const { server, trace } = await awaitServerSpan(receiver, request);
    expect(trace).toEqual([server]);
    expect(server.attributes['cost.http_client.calls']).toBe(1);
    expect(server.attributes['cost.http_client.untimed']).toBe(0);
    expect(upstreamTraceparents).toEqual([`00-${request.traceId}-${server.spanId}-00`]);
  });

  it('counts mysql2 and ioredis commands as exactly when unsampled', async () => {
    const app = await launch();
    // The first request of each opens its connection, whose handshake commands it pays for.
    await Promise.all([unsampled(`${app.url}/mysql/1`), unsampled(`${app.url}/redis/1`)]);
    const mysql = await awaitServerSpan(receiver, await unsampled(`${app.url}/mysql/4`));
    const redis = await awaitServerSpan(receiver, await unsampled(`${app.url}/redis/5`));
    expect([mysql.server.attributes['cost.db.queries'], redis.server.attributes['cost.db.queries']]).toEqual([4, 5]);
  });

  it('counts a query after the response as a late operation of its route', async () => {
    const app = await launch({ REQUEST_BUDGET_SUMMARY: 'true' });
    await unsampled(`${app.url}/after-response`);
    await app.waitForLine(/^request-budget: late: GET \/after-response \+1 query after the response \(SELECT \? AS late\)$/, 5000, 'stderr');
  });

  it('sampled requests are unchanged: their whole trace, every query a span', async () => {
    const app = await launch();
    const { server, trace } = await awaitServerSpan(receiver, await tracedGet(`${app.url}/queries/3`));
    expect(server.attributes['cost.db.queries']).toBe(3);
    await expect.poll(() => receiver.spans.filter((s) => s.traceId === server.traceId && s.name.startsWith('pg.query')).length, { timeout: 5000 }).toBe(3);
    expect(trace.length).toBeGreaterThan(1);
  });
});

describe('whole breached traces, opted in', () => {
  it('exports whole traces up to the rate, then roots alone, and says so once', async () => {
    const app = await launch({ REQUEST_BUDGET_EXPORT_BREACHED_DETAIL: 'trace', REQUEST_BUDGET_EXPORT_BREACHED_TRACES_PER_MINUTE: '3' });
    const sent: TracedRequest[] = [];
    for (let i = 0; i < 6; i += 1) sent.push(await unsampled(`${app.url}/queries/4`));
    for (const request of sent) {
      const { server } = await awaitServerSpan(receiver, request);
      expect(server.attributes['cost.db.queries']).toBe(4);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    const queriesExported = sent.map(
      (request) => receiver.spans.filter((s) => s.traceId === request.traceId && s.attributes['db.query.text'] === 'SELECT $1::int AS i').length,
    );
    expect(queriesExported).toEqual([4, 4, 4, 0, 0, 0]);
    expect(app.stderrLines.filter((line) => line.includes('REQUEST_BUDGET_EXPORT_BREACHED_TRACES_PER_MINUTE (3)'))).toHaveLength(1);
  });
});
