/**
 * Outgoing calls end to end, client by client: axios 1 (node http adapter, through
 * follow-redirects), got 16, undici 8 (`request`, `stream`, `fetch`, Client/Pool/Agent), Node's
 * global fetch and node:http. The app (test/fixtures/stacks/http-clients-app.js) calls an upstream
 * server that this test runs and that counts the requests it receives per key: each request's
 * cost.http_client.calls is held against that count, and its untimed figure and each client
 * span's `request_budget.http_client.timed` / `.timeout_ms` against what the route's call
 * does to bound itself.
 *
 * What counts as a call: each request on the wire. A redirect followed is two calls; got's two
 * retries after two 503s make three.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { concurrently } from '../support/http';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { OtlpSpanKind } from '../support/received-span';
import { awaitServerSpan, tracedGet } from '../support/traced-request';

/** [route, calls on the wire, of which untimed, timeout_ms on each client span (undefined: none known)] */
type Row = readonly [path: string, calls: number, untimed: number, timeoutMs: number | undefined];

const ROWS: readonly Row[] = [
  ['/axios/none', 1, 1, undefined],
  ['/axios/timeout', 1, 0, 2000],
  ['/axios/signal', 1, 0, 2000],
  ['/axios/long-timeout', 1, 1, 60000],
  ['/axios/long-signal', 1, 1, 60000],
  // An AbortController's signal has no delay anyone can read: the caller meant to bound the call.
  ['/axios/controller', 1, 0, undefined],
  ['/axios/instance', 1, 0, 2000],
  ['/axios/callable', 1, 0, 2000],
  ['/axios/redirect', 2, 0, 2000],
  ['/axios/redirect-none', 2, 2, undefined],
  ['/axios/native-timeout', 1, 0, 2000],
  ['/axios/native-none', 1, 1, undefined],
  ['/got/none', 1, 1, undefined],
  ['/got/timeout', 1, 0, 2000],
  ['/got/long', 1, 1, 60000],
  ['/got/socket', 1, 0, 2000],
  ['/got/signal', 1, 0, 2000],
  ['/got/retry', 3, 0, 2000],
  ['/got/retry-none', 3, 3, undefined],
  ['/undici/none', 1, 1, undefined],
  ['/undici/timeouts', 1, 0, 2000],
  // headersTimeout alone leaves a stalled body to wait out undici's 300 s default.
  ['/undici/headers-only', 1, 1, undefined],
  ['/undici/signal', 1, 0, 2000],
  ['/undici/long-signal', 1, 1, 60000],
  ['/undici/long-timeouts', 1, 1, 60000],
  ['/undici/stream-none', 1, 1, undefined],
  ['/undici/stream-signal', 1, 0, 2000],
  ['/undici/fetch-none', 1, 1, undefined],
  ['/undici/fetch-signal', 1, 0, 2000],
  ['/undici/fetch-dispatcher', 1, 0, 2000],
  ['/undici/client', 1, 1, undefined],
  ['/undici/client-timeouts', 1, 0, 2000],
  ['/undici/pool-timeouts', 1, 0, 2000],
  ['/undici/agent-dispatch', 1, 0, 2000],
  ['/undici/redirect', 2, 0, 2000],
  ['/fetch/none', 1, 1, undefined],
  ['/fetch/signal', 1, 0, 2000],
  ['/fetch/long-signal', 1, 1, 60000],
  ['/fetch/any', 1, 0, 2000],
  ['/fetch/redirect', 2, 0, 2000],
  ['/http/none', 1, 1, undefined],
  ['/http/option', 1, 0, 2000],
  ['/http/option-unhandled', 1, 1, undefined],
  ['/http/settimeout', 1, 0, 2000],
  ['/http/long-settimeout', 1, 1, 60000],
  ['/http/signal', 1, 0, 2000],
  ['/http/agent-timeout', 1, 0, 2000],
];

/** With REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS=1000, a 2000 ms timeout protects nobody. */
const CEILING_ROWS: readonly Row[] = [
  ['/axios/timeout', 1, 1, 2000],
  ['/axios/controller', 1, 0, undefined],
  ['/got/timeout', 1, 1, 2000],
  ['/undici/timeouts', 1, 1, 2000],
  ['/undici/fetch-dispatcher', 1, 1, 2000],
  ['/fetch/signal', 1, 1, 2000],
  ['/http/settimeout', 1, 1, 2000],
  ['/http/signal', 1, 1, 2000],
];

/** The ES module app under `--import`: got (ESM only), axios and undici loaded with `import`. */
const ESM_ROWS: readonly Row[] = [
  ['/got/none', 1, 1, undefined],
  ['/got/timeout', 1, 0, 2000],
  ['/got/long', 1, 1, 60000],
  ['/axios/none', 1, 1, undefined],
  ['/axios/signal', 1, 0, 2000],
  ['/axios/long-timeout', 1, 1, 60000],
  ['/undici/signal', 1, 0, 2000],
];

/** The upstream: counts every request it receives by the key at the end of its path. */
interface Upstream {
  readonly url: string;
  count(key: string): number;
  close(): Promise<void>;
}

async function startUpstream(): Promise<Upstream> {
  const counts = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const [kind, ...rest] = (req.url ?? '').split('?')[0]!.split('/').filter(Boolean);
    const key = rest[rest.length - 1] ?? '';
    const seen = (counts.get(key) ?? 0) + 1;
    counts.set(key, seen);
    req.resume();
    if (kind === 'redirect') {
      res.writeHead(302, { location: `/ok/${key}` }).end();
    } else if (kind === 'flaky' && seen <= Number(rest[0])) {
      res.writeHead(503).end('try again');
    } else {
      setTimeout(() => res.end('upstream'), 2);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    count: (key) => counts.get(key) ?? 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let receiver: OtlpReceiver;
let upstream: Upstream;
/** The CommonJS app with the default ceiling, and with REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS=1000. */
let app: AppProcess;
let strict: AppProcess;
/** The ES module app, with the loader hook (--import) and without it (--require). */
let esm: AppProcess;
let unhooked: AppProcess;
let keys = 0;

function startClientsApp(
  extraEnv: Record<string, string> = {},
  { script = 'test/fixtures/stacks/http-clients-app.js', loader = '--require' }: { script?: string; loader?: '--require' | '--import' } = {},
): Promise<AppProcess> {
  return startApp({
    script,
    requireRegister: false,
    nodeArgs: [loader, '@request-budget/node/register'],
    // Four apps start at once on a shared machine: allow for a slow start.
    timeoutMs: 45_000,
    env: {
      OTEL_SERVICE_NAME: 'http-clients-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      UPSTREAM_URL: upstream.url,
      ...extraEnv,
    },
  });
}

const ESM_APP = 'test/fixtures/stacks/http-clients-esm-app.mjs';

beforeAll(async () => {
  [receiver, upstream] = await Promise.all([startOtlpReceiver(), startUpstream()]);
  // Started together: each start is mostly waiting.
  [app, strict, esm, unhooked] = await Promise.all([
    startClientsApp(),
    startClientsApp({ REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS: '1000' }),
    startClientsApp({}, { script: ESM_APP, loader: '--import' }),
    startClientsApp({}, { script: ESM_APP, loader: '--require' }),
  ]);
});

afterAll(async () => {
  await Promise.all([app?.stop(), strict?.stop(), esm?.stop(), unhooked?.stop()]);
  await Promise.all([receiver?.close(), upstream?.close()]);
});

/** Outgoing-call spans of the trace: CLIENT spans with an HTTP method (what the cost counts). */
function clientCalls(trace: readonly ReceivedSpan[]): ReceivedSpan[] {
  return trace.filter((s) => s.kind === OtlpSpanKind.CLIENT && s.attributes['http.request.method'] !== undefined);
}

/** Sends the route with a fresh key; returns what the cost record, the spans and the upstream say. */
async function callRoute(target: AppProcess, path: string) {
  keys += 1;
  const key = `k${process.pid}x${keys}`;
  const request = await tracedGet(`${target.url}${path}?key=${key}`);
  const { server, trace } = await awaitServerSpan(receiver, request);
  const spans = clientCalls(trace);
  return {
    path,
    status: request.response.status,
    calls: server.attributes['cost.http_client.calls'],
    untimed: server.attributes['cost.http_client.untimed'],
    upstream: upstream.count(key),
    spans: spans.length,
    timed: spans.map((s) => s.attributes['request_budget.http_client.timed']),
    timeoutMs: spans.map((s) => s.attributes['request_budget.http_client.timeout_ms']),
    types: spans.map((s) => [s.attributeTypes['request_budget.http_client.timed'], s.attributeTypes['request_budget.http_client.timeout_ms']]),
  };
}

/** What a row expects, in the shape callRoute returns. */
function expected([path, calls, untimed, timeoutMs]: Row) {
  return {
    path,
    status: 200,
    calls,
    untimed,
    upstream: calls,
    spans: calls,
    timed: Array.from({ length: calls }, () => untimed === 0),
    timeoutMs: Array.from({ length: calls }, () => timeoutMs),
    types: Array.from({ length: calls }, () => ['bool', timeoutMs === undefined ? undefined : 'int']),
  };
}

describe('one request at a time, default ceiling (30 s)', () => {
  it.each(ROWS)('%s: %i call(s) on the wire, %i untimed, timeout %s ms', async (...row) => {
    expect(await callRoute(app, row[0])).toEqual(expected(row));
  });
});

/** request-budget's own lines on the app's stderr (problems it reports). */
function problemsOf(target: AppProcess): string[] {
  return target.stderrLines.filter((line) => line.startsWith('request-budget:'));
}

describe('30 requests in flight at once, every client mixed', () => {
  it('judges and counts each request as it does alone', async () => {
    const rows = Array.from({ length: 30 }, (_, i) => ROWS[(i * 7) % ROWS.length]!);
    const results = await concurrently(rows.length, (i) => callRoute(app, rows[i]![0]));
    expect(results).toEqual(rows.map(expected));
  });

  it('left nothing to report on stderr: every client was seen', () => {
    expect(problemsOf(app)).toEqual([]);
  });
});

describe('with REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS=1000', () => {
  it.each(CEILING_ROWS)('%s: %i call(s), %i untimed, timeout %s ms', async (...row) => {
    expect(await callRoute(strict, row[0])).toEqual(expected(row));
  });
});

describe('an ES module app started with --import', () => {
  it.each(ESM_ROWS)('%s: %i call(s), %i untimed, timeout %s ms', async (...row) => {
    expect(await callRoute(esm, row[0])).toEqual(expected(row));
  });

  it('left nothing to report on stderr', () => {
    expect(problemsOf(esm)).toEqual([]);
  });
});

describe('the same ES module app started with --require: no loader hook, axios and got unseen', () => {
  it('says so once per client on stderr, with the fix, rather than being silently wrong', async () => {
    for (const path of ['/got/timeout', '/got/timeout', '/axios/signal', '/axios/signal']) await callRoute(unhooked, path);
    const problems = problemsOf(unhooked);
    expect(problems).toHaveLength(2);
    for (const client of ['got', 'axios']) {
      expect(problems.filter((line) => line.startsWith(`request-budget: ${client} calls are made without request-budget seeing`))).toHaveLength(1);
    }
    expect(problems.every((line) => line.includes('node --import @request-budget/node/register'))).toBe(true);
  });
});
