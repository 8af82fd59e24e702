/**
 * End to end: budgets from a file, judged in the app process (under --require), marked on the
 * exported spans, delivered to a real Alertmanager, a webhook in this process and the log.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlertmanager, type RunningAlertmanager } from './support/alertmanager';
import { startApp, type AppProcess } from './support/app-process';
import { concurrently, get } from './support/http';
import { OtlpSpanKind } from './support/received-span';
import { useReceiverAndApps } from './support/receiver-and-apps';
import { awaitServerSpan, costOf, tracedGet } from './support/traced-request';
import { freePort } from './support/free-port';

const BUDGETS = 'test/fixtures/budgets.yaml';
const { receiver, apps } = useReceiverAndApps();

async function launch(env: Record<string, string | undefined>): Promise<AppProcess> {
  const app = await startApp({
    script: 'test/fixtures/cost-app.js',
    env: {
      OTEL_SERVICE_NAME: 'cost-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '50',
      REQUEST_BUDGET_FILE: BUDGETS,
      ...env,
    },
  });
  apps.push(app);
  return app;
}

function breachLines(app: AppProcess): Record<string, unknown>[] {
  return app.stderrLines.filter((line) => line.startsWith('{"event":"budget.breach"')).map((line) => JSON.parse(line));
}

describe('budget marks on exported spans', () => {
  it('marks a breach with rule, violations and events of the right OTLP types, and a pass with breached=false', async () => {
    const app = await launch({});
    const over = (await costOf(receiver, `${app.url}/queries/12`)).server;
    expect(over.attributes['budget.rule']).toBe('GET /queries/:n');
    expect(over.attributes['budget.breached']).toBe(true);
    expect(over.attributeTypes['budget.breached']).toBe('bool');
    expect(over.attributes['budget.violations']).toEqual(['db.queries 12>10']);
    expect(over.attributeTypes['budget.violations']).toBe('array');
    expect(over.events.map((e) => [e.name, e.attributes, e.attributeTypes])).toEqual([
      [
        'budget.breach',
        { metric: 'db.queries', value: 12, limit: 10, severity: 'critical' },
        { metric: 'string', value: 'int', limit: 'int', severity: 'string' },
      ],
    ]);

    const within = (await costOf(receiver, `${app.url}/queries/3`)).server;
    expect(within.attributes['budget.rule']).toBe('GET /queries/:n');
    expect(within.attributes['budget.breached']).toBe(false);
    expect(within.events).toEqual([]);

    const defaults = (await costOf(receiver, `${app.url}/health`)).server;
    expect(defaults.attributes['budget.rule']).toBe('defaults');

    const nPlusOne = (await costOf(receiver, `${app.url}/n-plus-one/8`)).server;
    expect(nPlusOne.attributes['budget.violations']).toEqual(['db.repeated_count 8>5']);
    expect(nPlusOne.events[0]?.attributes).toEqual({
      metric: 'db.repeated_count',
      value: 8,
      limit: 5,
      severity: 'warning',
      statement: 'SELECT $1::int AS id, md5($1::text) AS name',
    });

    const untimed = (await costOf(receiver, `${app.url}/fetch`)).server;
    expect(untimed.attributes['budget.violations']).toEqual(['http_client.untimed 1>0']);
  });

  it('writes one JSON log line per breach, and the summary line says OVER BUDGET', async () => {
    const app = await launch({ REQUEST_BUDGET_SUMMARY: 'true' });
    const { server } = await costOf(receiver, `${app.url}/queries/11`);
    await app.waitForLine(/^\{"event":"budget\.breach"/, 5000, 'stderr');
    const [line] = breachLines(app);
    expect(line).toEqual({
      event: 'budget.breach',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      service: 'cost-app',
      route: 'GET /queries/:n',
      rule: 'GET /queries/:n',
      metric: 'db.queries',
      value: 11,
      limit: 10,
      severity: 'critical',
      trace_id: server.traceId,
      span_id: server.spanId,
    });
    await app.waitForLine(/GET \/queries\/:n 200 .* queries=11 .* OVER BUDGET \(GET \/queries\/:n\): db\.queries 11>10$/, 5000, 'stderr');
  });
});

describe('sampling', () => {
  it('judges every request, and exports the root span of a breached request the sampler dropped', async () => {
    const app = await launch({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1', REQUEST_BUDGET_SUMMARY: 'true' });
    // An unsampled parent makes the sampler drop these deterministically.
    const unsampledGet = (path: string) => {
      const traceId = randomBytes(16).toString('hex');
      const parentSpanId = randomBytes(8).toString('hex');
      return get(`${app.url}${path}`, { headers: { traceparent: `00-${traceId}-${parentSpanId}-00` } }).then((response) => ({
        response,
        traceId,
        parentSpanId,
      }));
    };
    const breached = await concurrently(10, () => unsampledGet('/queries/12'));
    const within = await concurrently(10, () => unsampledGet('/queries/2'));
    for (const request of breached) {
      const { server, trace } = await awaitServerSpan(receiver, request);
      expect(server.attributes['budget.breached']).toBe(true);
      // Its root alone, with the cost record (whole traces are opt-in: unsampled-requests.test.ts).
      expect(trace).toEqual([server]);
      expect(server.attributes['cost.db.queries']).toBe(12);
    }
    // Every request was measured and judged, sampled or not: 20 summary lines, 10 breach lines.
    await app.waitForLine(/queries=2 /, 5000, 'stderr');
    await expect.poll(() => app.stderrLines.filter((l) => /GET \/queries\/:n 200 .* queries=(12|2) /.test(l)).length, { timeout: 5000 }).toBe(20);
    await expect.poll(() => breachLines(app).length, { timeout: 5000 }).toBe(10);
    // The within-budget ones stayed unexported.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.spans.filter((s) => within.some((w) => w.traceId === s.traceId))).toEqual([]);

    // Requests with no parent meet the 10% ratio sampler itself.
    await concurrently(200, () => get(`${app.url}/health`));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const exportedHealth = receiver.serverSpans().filter((s) => s.attributes['http.route'] === '/health').length;
    expect(exportedHealth).toBeGreaterThan(0);
    expect(exportedHealth).toBeLessThan(60);
  });
});

describe('alerts to a real Alertmanager', () => {
  let alertmanager: RunningAlertmanager;
  beforeAll(async () => {
    alertmanager = await startAlertmanager();
  });
  afterAll(async () => {
    await alertmanager?.stop();
  });

  it('turns repeated breaches into one alert with the right labels, and resolves it after a quiet period', async () => {
    const app = await launch({
      REQUEST_BUDGET_ALERTMANAGER_URL: alertmanager.url,
      REQUEST_BUDGET_ALERT_RESEND_MS: '500',
      REQUEST_BUDGET_ALERT_RESOLVE_MS: '2500',
    });
    const requests = [];
    for (let i = 0; i < 5; i += 1) requests.push(await tracedGet(`${app.url}/queries/${11 + i}`));
    await expect.poll(() => alertmanager.alerts({ service: 'cost-app' }), { timeout: 5000 }).toHaveLength(1);
    const [alert] = await alertmanager.alerts({ service: 'cost-app' });
    expect(alert!.labels).toEqual({
      alertname: 'RequestBudgetExceeded',
      service: 'cost-app',
      route: 'GET /queries/:n',
      metric: 'db.queries',
      severity: 'critical',
    });
    expect(alert!.status.state).toBe('active');
    expect(alert!.annotations).toMatchObject({ limit: '10', rule: 'GET /queries/:n' });
    expect(requests.map((r) => r.traceId)).toContain(alert!.annotations.trace_id);
    expect(Number(alert!.annotations.value)).toBeGreaterThan(10);

    // Breaches keep coming: still one alert, kept firing.
    await get(`${app.url}/queries/20`);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(await alertmanager.alerts({ service: 'cost-app' })).toHaveLength(1);

    // Quiet: resolved (sent with endsAt = now, after which Alertmanager no longer lists it).
    await expect.poll(() => alertmanager.alerts({ service: 'cost-app' }), { timeout: 8000, interval: 250 }).toHaveLength(0);
    expect((await alertmanager.receivedCounts()).resolved).toBeGreaterThanOrEqual(1);
  });

  it('sends the configured headers (through a proxy that refuses without them) and links each alert to the trace of its latest breach', async () => {
    // Alertmanager behind a proxy that wants a token, as many are deployed.
    const seen: (string | undefined)[] = [];
    const proxy = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      if (req.headers.authorization !== 'Basic YWxlcnQ6cyNjcmV0') {
        res.statusCode = 401;
        return res.end();
      }
      const forward = http.request(`${alertmanager.url}${req.url}`, { method: req.method, headers: { 'content-type': 'application/json' } }, (upstream) => {
        res.statusCode = upstream.statusCode ?? 502;
        upstream.pipe(res);
      });
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const app = await launch({
        OTEL_SERVICE_NAME: 'linked-app',
        REQUEST_BUDGET_ALERTMANAGER_URL: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
        // URL-encoded as in OTEL_EXPORTER_OTLP_HEADERS: %20 a space, %23 a '#'.
        REQUEST_BUDGET_ALERTMANAGER_HEADERS: 'Authorization=Basic%20YWxlcnQ6cyNjcmV0',
        REQUEST_BUDGET_TRACE_URL: 'http://jaeger:16686/trace/{traceId}',
        REQUEST_BUDGET_ALERT_RESEND_MS: '500',
        REQUEST_BUDGET_ALERT_LOG: 'false',
      });
      const first = await tracedGet(`${app.url}/queries/11`);
      await expect.poll(() => alertmanager.alerts({ service: 'linked-app' }), { timeout: 5000 }).toHaveLength(1);
      expect((await alertmanager.alerts({ service: 'linked-app' }))[0]!.generatorURL).toBe(`http://jaeger:16686/trace/${first.traceId}`);
      // A later breach of the same alert: the link follows it.
      const latest = await tracedGet(`${app.url}/queries/12`);
      await expect
        .poll(async () => (await alertmanager.alerts({ service: 'linked-app' })).map((alert) => [alert.generatorURL, alert.annotations.trace_id]), {
          timeout: 5000,
        })
        .toEqual([[`http://jaeger:16686/trace/${latest.traceId}`, latest.traceId]]);
      expect(seen.length).toBeGreaterThanOrEqual(2);
      expect(new Set(seen)).toEqual(new Set(['Basic YWxlcnQ6cyNjcmV0']));
      // The secret never reaches stderr.
      expect(app.stderrLines.filter((line) => line.includes('YWxlcnQ6cyNjcmV0'))).toEqual([]);
    } finally {
      proxy.close();
    }
  });
});

describe('webhook', () => {
  it('retries with backoff until the receiver accepts, delivering each breach exactly once', async () => {
    const bodies: { breaches: Record<string, unknown>[] }[] = [];
    let failuresLeft = 2;
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        if (failuresLeft > 0) {
          failuresLeft -= 1;
          res.statusCode = 503;
          return res.end('busy');
        }
        bodies.push(JSON.parse(body));
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const app = await launch({
        REQUEST_BUDGET_WEBHOOK_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
        REQUEST_BUDGET_ALERT_LOG: 'false',
      });
      const { server: span } = await costOf(receiver, `${app.url}/n-plus-one/7`);
      await expect.poll(() => bodies.length, { timeout: 10_000 }).toBe(1);
      expect(bodies[0]!.breaches).toEqual([
        expect.objectContaining({
          event: 'budget.breach',
          route: 'GET /n-plus-one/:n',
          metric: 'db.repeated_count',
          value: 7,
          limit: 5,
          trace_id: span.traceId,
        }),
      ]);
      expect(failuresLeft).toBe(0);
      expect(breachLines(app)).toEqual([]);
    } finally {
      server.close();
    }
  });

  it('sends the configured Authorization header, and each breach with the link to its trace (webhook and log)', async () => {
    const received: { authorization: string | undefined; tenant: string | undefined; body: { breaches: Record<string, unknown>[] } }[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        received.push({ authorization: req.headers.authorization, tenant: req.headers['x-tenant'] as string | undefined, body: JSON.parse(body) });
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const app = await launch({
        REQUEST_BUDGET_WEBHOOK_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
        REQUEST_BUDGET_WEBHOOK_HEADERS: 'Authorization=Bearer%20hook-s3cret,X-Tenant=shop',
        REQUEST_BUDGET_TRACE_URL: 'http://zipkin:9411/zipkin/traces/{traceId}',
      });
      const { server: span } = await costOf(receiver, `${app.url}/n-plus-one/7`);
      await expect.poll(() => received.length, { timeout: 10_000 }).toBe(1);
      expect(received[0]!.authorization).toBe('Bearer hook-s3cret');
      expect(received[0]!.tenant).toBe('shop');
      expect(received[0]!.body.breaches).toEqual([
        expect.objectContaining({ metric: 'db.repeated_count', trace_id: span.traceId, trace_url: `http://zipkin:9411/zipkin/traces/${span.traceId}` }),
      ]);
      await app.waitForLine(/^\{"event":"budget\.breach"/, 5000, 'stderr');
      expect(breachLines(app).map((line) => line.trace_url)).toEqual([`http://zipkin:9411/zipkin/traces/${span.traceId}`]);
      expect(app.stderrLines.filter((line) => line.includes('hook-s3cret'))).toEqual([]);
    } finally {
      server.close();
    }
  });

  it('delivers alerts outside every trace: no span of the delivery in the breaching trace or any other', async () => {
    const posts: string[] = [];
    const server = http.createServer((req, res) => {
      posts.push(String(req.headers.traceparent ?? 'none'));
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const app = await launch({ REQUEST_BUDGET_WEBHOOK_URL: `http://127.0.0.1:${port}/hook`, REQUEST_BUDGET_ALERT_LOG: 'false' });
      const first = await costOf(receiver, `${app.url}/n-plus-one/7`);
      await expect.poll(() => posts.length, { timeout: 10_000 }).toBe(1);
      // A second breach whose delivery happens while another request is in flight.
      const slow = tracedGet(`${app.url}/queries/3?yield=1`);
      const second = await costOf(receiver, `${app.url}/n-plus-one/6`);
      await expect.poll(() => posts.length, { timeout: 10_000 }).toBe(2);
      await awaitServerSpan(receiver, await slow);
      // Everything the app exported by now, the server spans' children included.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const toHook = receiver.spans.filter((s) => JSON.stringify(s.attributes).includes(`:${port}`) || s.attributes['server.port'] === port);
      expect(toHook).toEqual([]);
      expect(posts).toEqual(['none', 'none']);
      expect(first.trace.filter((s) => s.kind === OtlpSpanKind.CLIENT && s.attributes['http.request.method'] === 'POST')).toEqual([]);
      expect(second.server.attributes['budget.breached']).toBe(true);
    } finally {
      server.close();
    }
  });

  it('leaves the app unaffected when every receiver is down, and says so with the cause, once per receiver per minute', async () => {
    const closed = await freePort(); // nothing listens there: connections are refused
    const app = await launch({
      REQUEST_BUDGET_ALERTMANAGER_URL: `http://127.0.0.1:${closed}`,
      REQUEST_BUDGET_WEBHOOK_URL: `http://127.0.0.1:${closed}/hook`,
    });
    // One breach first, whose webhook batch is being retried when the next 29 come: two batches.
    expect((await get(`${app.url}/queries/11`)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const results = await concurrently(29, (i) => get(`${app.url}/queries/${11 + (i % 3)}`));
    expect(results.every((r) => r.status === 200)).toBe(true);
    await app.waitForLine(/request-budget: alertmanager: could not send/, 10_000, 'stderr');
    // The webhook gives a batch up after 5 attempts (~7.5 s of backoff): its first drop is said.
    await app.waitForLine(/request-budget: webhook: dropped/, 15_000, 'stderr');
    // Long enough for a second batch to be given up and Alertmanager to fail again and again:
    // still one line each (until a minute has passed), and the app serves on.
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    expect((await get(`${app.url}/health`)).status).toBe(200);
    const failureLines = app.stderrLines.filter((l) => /^request-budget: (alertmanager|webhook):/.test(l));
    expect(failureLines).toEqual([
      expect.stringMatching(
        new RegExp(
          `^request-budget: alertmanager: could not send 1 alert\\(s\\) to http://127\\.0\\.0\\.1:${closed}/api/v2/alerts: fetch failed \\(ECONNREFUSED\\); retrying with backoff \\(said at most once a minute\\)$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(
          `^request-budget: webhook: dropped 1 breach\\(es\\) after failing to post to http://127\\.0\\.0\\.1:${closed}/hook: fetch failed \\(ECONNREFUSED\\) \\(said at most once a minute\\)$`,
        ),
      ),
    ]);
  });
});

describe('a bad budget file', () => {
  it('is reported once with file, line and field; the app runs on, measuring without budgets', async () => {
    const app = await launch({ REQUEST_BUDGET_FILE: 'test/fixtures/bad-budgets.yaml', REQUEST_BUDGET_SUMMARY: 'true' });
    const { server } = await costOf(receiver, `${app.url}/queries/12`);
    expect(server.attributes['cost.db.queries']).toBe(12);
    expect(server.attributes['budget.rule']).toBeUndefined();
    expect(app.stderrLines.filter((l) => l.startsWith('request-budget:') && !l.includes(' queries='))).toEqual([
      'request-budget: budget file test/fixtures/bad-budgets.yaml rejected; running without budgets (costs are still recorded):',
      'request-budget:   bad-budgets.yaml:6 routes[0].queries: expected a non-negative integer, got "three"',
      'request-budget:   bad-budgets.yaml:8 routes[1].rowz: unknown key (expected one of match, queries, dbTimeMs, rows, repeatedQueries, heapDeltaBytes, allocatedBytes, dbBytes, durationMs, httpClientCalls, untimedHttpCalls, enqueuedJobs, severity, heapMinConfidence, allowRepeated)',
    ]);
    expect(server.kind).toBe(OtlpSpanKind.SERVER);
  });
});
