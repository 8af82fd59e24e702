/**
 * End to end: request-budget's own failures are visible. Spans a trace exporter could not export
 * are counted in request_budget_export_failures_total{exporter}, alert deliveries in
 * request_budget_alert_failures_total{sink} and request_budget_alert_drops_total{sink} (exact,
 * against what the refusing backends themselves received), every one labelled with the service;
 * and a metrics port already in use is said in one stderr line while the app runs on.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from './support/app-process';
import { freePort } from './support/free-port';
import { get } from './support/http';
import { decodeProtobufRequest } from './support/otlp-decode';
import { readBody } from './support/request-body';

/** An HTTP server that reads every POST, counts what it held, and refuses it with 400. */
interface RefusingServer {
  readonly url: string;
  /** Requests refused, and the items (spans, or breaches) in them. */
  readonly refused: { requests: number; items: number };
  close(): Promise<void>;
}

async function startRefusingServer(countItems: (body: Buffer) => number): Promise<RefusingServer> {
  const refused = { requests: 0, items: 0 };
  const server = http.createServer((req, res) => {
    readBody(req).then(
      (body) => {
        refused.requests += 1;
        refused.items += countItems(body);
        res.writeHead(400, { 'content-type': 'text/plain' }).end('refused by the test');
      },
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    refused,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The value of one sample on a Prometheus text page, or undefined. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels},`) || l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('export and alert failures, as metrics', () => {
  let collector: RefusingServer;
  let webhook: RefusingServer;
  let app: AppProcess;
  let metricsUrl: string;
  const scrape = async () => (await fetch(metricsUrl)).text();

  beforeAll(async () => {
    collector = await startRefusingServer((body) => decodeProtobufRequest(body).length);
    webhook = await startRefusingServer((body) => (JSON.parse(body.toString('utf8')) as { breaches: unknown[] }).breaches.length);
    const port = await freePort();
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
    app = await startApp({
      script: 'test/fixtures/cost-app.js',
      env: {
        OTEL_SERVICE_NAME: 'failing-app',
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
        OTEL_BSP_SCHEDULE_DELAY: '50',
        OTEL_METRICS_EXPORTER: 'prometheus',
        OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
        OTEL_EXPORTER_PROMETHEUS_PORT: String(port),
        REQUEST_BUDGET_FILE: 'test/fixtures/budgets.yaml',
        REQUEST_BUDGET_ALERT_LOG: 'false',
        REQUEST_BUDGET_WEBHOOK_URL: `${webhook.url}/hook`,
      },
    });
  });

  afterAll(async () => {
    await app?.stop();
    await Promise.all([collector?.close(), webhook?.close()]);
  });

  it('publishes each counter from 0, labelled with the service and the exporter or sink', async () => {
    const text = await scrape();
    // Nothing has been exported yet (no request), so nothing refused: the series are there at 0.
    expect(collector.refused.requests).toBe(0);
    expect(sample(text, 'request_budget_export_failures_total', 'service="failing-app",exporter="otlp"')).toBe(0);
    for (const name of ['request_budget_alert_deliveries_total', 'request_budget_alert_failures_total', 'request_budget_alert_drops_total']) {
      expect(sample(text, name, 'service="failing-app",sink="webhook"'), name).toBe(0);
    }
  });

  it('counts every span the backend refused, and every alert the webhook refused, exactly', async () => {
    // One request at a time, each one breach (12 queries over the critical limit of 10): the
    // webhook gets each breach in a batch of its own, refuses it with 400 (not retried), and the
    // sink drops it.
    for (let i = 1; i <= 3; i += 1) {
      expect((await get(`${app.url}/queries/12`)).status).toBe(200);
      await waitUntil(() => webhook.refused.items === i, `breach ${i} at the webhook`);
    }
    // Each request is a trace of 13 spans or more (the SERVER span and its 12 queries). The app
    // counts a batch when the refusal comes back: wait until it has caught up with the backend.
    const exportFailures = (text: string) => sample(text, 'request_budget_export_failures_total', 'service="failing-app",exporter="otlp"');
    const alertDrops = (text: string) => sample(text, 'request_budget_alert_drops_total', 'service="failing-app",sink="webhook"');
    await waitUntil(async () => {
      const text = await scrape();
      return collector.refused.items >= 3 * 13 && exportFailures(text) === collector.refused.items && alertDrops(text) === webhook.refused.items;
    }, 'the counters to catch up with the refusing backends');
    const text = await scrape();

    expect(collector.refused.requests).toBeGreaterThan(0);
    expect(exportFailures(text)).toBe(collector.refused.items);
    expect([webhook.refused.requests, webhook.refused.items]).toEqual([3, 3]);
    expect(sample(text, 'request_budget_alert_failures_total', 'service="failing-app",sink="webhook"')).toBe(3);
    expect(alertDrops(text)).toBe(3);
    expect(sample(text, 'request_budget_alert_deliveries_total', 'service="failing-app",sink="webhook"')).toBe(0);
    // The breaches themselves were counted as ever, with the service.
    expect(sample(text, 'request_budget_breaches_total', 'service="failing-app",route="GET /queries/:n",metric="db.queries",severity="critical"')).toBe(3);
    // And stderr said it, with the cause.
    expect(
      app.stderrLines.some((l) => /^request-budget: could not export \d+ span\(s\) to OTLP \(http\/protobuf\) http:\/\/127\.0\.0\.1:\d+\/v1\/traces: /.test(l)),
    ).toBe(true);
  });
});

describe('a metrics port already in use', () => {
  let occupier: net.Server;
  let app: AppProcess | undefined;

  afterAll(async () => {
    await app?.stop();
    await new Promise((resolve) => occupier?.close(resolve));
  });

  it('is said in one stderr line naming the address and the variable; the app runs on', async () => {
    occupier = net.createServer();
    await new Promise<void>((resolve) => occupier.listen(0, '127.0.0.1', resolve));
    const { port } = occupier.address() as net.AddressInfo;
    app = await startApp({
      script: 'test/fixtures/cost-app.js',
      env: {
        OTEL_SERVICE_NAME: 'busy-port-app',
        OTEL_TRACES_EXPORTER: 'none',
        OTEL_METRICS_EXPORTER: 'prometheus',
        OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
        OTEL_EXPORTER_PROMETHEUS_PORT: String(port),
      },
    });
    const expected = `request-budget: cannot serve Prometheus metrics on 127.0.0.1:${port}: the port is already in use; the app runs on without them — set OTEL_EXPORTER_PROMETHEUS_PORT to a free port`;
    await app.waitForLine(/cannot serve Prometheus metrics/, 10_000, 'stderr');
    // The app serves requests, measured as ever.
    for (let i = 0; i < 3; i += 1) expect((await get(`${app.url}/queries/2`)).status).toBe(200);
    expect(app.stderrLines.filter((l) => l.startsWith('request-budget:'))).toEqual([expected]);
    // And stops cleanly on its own SIGTERM handler, saying nothing more.
    expect(await app.stop()).toBe(0);
    expect(app.stderrLines.filter((l) => l.startsWith('request-budget:'))).toEqual([expected]);
  });
});
