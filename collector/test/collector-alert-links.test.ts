/**
 * The collector's alert delivery options: request headers for Alertmanager and the webhook (from
 * the environment, URL-decoded) and the trace link template, which becomes each Alertmanager
 * alert's generatorURL and each breach event's trace_url. A real Alertmanager, behind a proxy
 * that refuses requests without the token, and a webhook that records what it gets.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlertmanager, type RunningAlertmanager } from '../../test/support/alertmanager';
import { COLLECTOR_BUDGETS, startCollectorProcess, type CollectorProcess } from './support/collector-process';
import { ordersTrace, postOtlp, toOtlpProtobuf } from './support/synthetic-trace';

let alertmanager: RunningAlertmanager;
let proxy: http.Server;
let webhook: http.Server;
let collector: CollectorProcess;
const proxied: (string | undefined)[] = [];
const posts: { authorization: string | undefined; breaches: Record<string, unknown>[] }[] = [];

const listen = (server: http.Server) => new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));

beforeAll(async () => {
  alertmanager = await startAlertmanager();
  proxy = http.createServer((req, res) => {
    proxied.push(req.headers.authorization);
    if (req.headers.authorization !== 'Bearer am-t0ken') {
      res.statusCode = 401;
      return res.end();
    }
    const forward = http.request(`${alertmanager.url}${req.url}`, { method: req.method, headers: { 'content-type': 'application/json' } }, (upstream) => {
      res.statusCode = upstream.statusCode ?? 502;
      upstream.pipe(res);
    });
    req.pipe(forward);
  });
  webhook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      posts.push({ authorization: req.headers.authorization, ...(JSON.parse(body) as { breaches: Record<string, unknown>[] }) });
      res.end('ok');
    });
  });
  const [proxyPort, webhookPort] = await Promise.all([listen(proxy), listen(webhook)]);
  collector = await startCollectorProcess(
    [
      '--budgets',
      COLLECTOR_BUDGETS,
      '--grace-period',
      '100ms',
      '--alertmanager-url',
      `http://127.0.0.1:${proxyPort}`,
      '--webhook-url',
      `http://127.0.0.1:${webhookPort}/breaches`,
      '--trace-url',
      'http://jaeger:16686/trace/{traceId}',
    ],
    {
      REQUEST_BUDGET_COLLECTOR_ALERTMANAGER_HEADERS: 'Authorization=Bearer%20am-t0ken',
      REQUEST_BUDGET_COLLECTOR_WEBHOOK_HEADERS: 'Authorization=Bearer%20hook-t0ken',
    },
  );
});

afterAll(async () => {
  await collector?.stop();
  await alertmanager?.stop();
  await Promise.all([new Promise((resolve) => proxy?.close(resolve)), new Promise((resolve) => webhook?.close(resolve))]);
});

describe('alert links and headers in the collector', () => {
  it('sends the headers, and links every alert and breach event to the breaching trace', async () => {
    const trace = ordersTrace();
    expect((await postOtlp(collector.tracesUrl, toOtlpProtobuf(trace), 'application/x-protobuf')).status).toBe(200);
    const link = `http://jaeger:16686/trace/${trace.traceId}`;

    // Three limits broken by the order root: three alerts, each linked to the trace.
    await expect.poll(() => alertmanager.alerts({ service: 'orders-py' }), { timeout: 10_000 }).toHaveLength(3);
    const alerts = await alertmanager.alerts({ service: 'orders-py' });
    expect(alerts.map((alert) => [alert.labels.metric, alert.generatorURL, alert.annotations.trace_id]).sort()).toEqual([
      ['db.queries', link, trace.traceId],
      ['db.repeated_count', link, trace.traceId],
      ['db.time_ms', link, trace.traceId],
    ]);
    expect(new Set(proxied)).toEqual(new Set(['Bearer am-t0ken']));

    await expect.poll(() => posts.flatMap((post) => post.breaches).length, { timeout: 10_000 }).toBe(3);
    expect(posts.map((post) => post.authorization)).toEqual(posts.map(() => 'Bearer hook-t0ken'));
    expect(posts.flatMap((post) => post.breaches).map((breach) => [breach.metric, breach.trace_url])).toEqual([
      ['db.queries', link],
      ['db.time_ms', link],
      ['db.repeated_count', link],
    ]);

    const logLines = collector.stderrLines
      .filter((line) => line.startsWith('{"event":"budget.breach"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(logLines.map((line) => line.trace_url)).toEqual([link, link, link]);
    expect(collector.stderrLines.filter((line) => line.includes('t0ken'))).toEqual([]);
  });
});
