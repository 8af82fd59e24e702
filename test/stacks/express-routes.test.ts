/**
 * Express route templates, started as users start apps (`--require @request-budget/node/register`):
 * the server span's name and `http.route` for each shape of route an express app declares
 * (test/fixtures/stacks/express-routes-app.js). By default request-budget's own route naming
 * (express-route-instrumentation.ts) gives them, with no span of its own; with
 * REQUEST_BUDGET_EXPRESS_LAYER_SPANS=true instrumentation-express does, with its layer spans.
 * The two agree on every route that answers; they differ on requests no route answers (PASSED_ON).
 *
 * Every case runs on express 5 (the root's) and express 4 (test/fixtures/express4, a workspace of
 * its own so that its express keeps the package name instrumentations hook by).
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { OtlpSpanKind, startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';
import { awaitServerSpan, tracedGet } from '../support/traced-request';

const EXPRESS_SCOPE = '@opentelemetry/instrumentation-express';
const EXPRESS4_MODULE = fileURLToPath(new URL('../fixtures/express4/node_modules/express', import.meta.url));

/** Path requested, status answered, span name, http.route. */
type Case = readonly [string, number, string, string | undefined];

const ROUTES: readonly Case[] = [
  ['/health', 200, 'GET /health', '/health'],
  ['/users/7', 200, 'GET /users/:id', '/users/:id'],
  // Mounted routers: the mount path's pattern, never its filled-in value (`/api/v2`).
  ['/api/v2/users', 200, 'GET /api/:version/users', '/api/:version/users'],
  ['/api/v2/users/', 200, 'GET /api/:version/users', '/api/:version/users'],
  ['/api/v2/users/7', 200, 'GET /api/:version/users/:id', '/api/:version/users/:id'],
  ['/api/v3/users/7/orders/4', 200, 'GET /api/:version/users/:id/orders/:n', '/api/:version/users/:id/orders/:n'],
  ['/admin/stats', 200, 'GET /admin/stats', '/admin/stats'],
  // next('route') passes the request on: the route that answers names it.
  ['/items/7', 200, 'GET /items/:id', '/items/:id'],
  ['/items/special', 200, 'GET /items/:slug', '/items/:slug'],
  // A path array is one route: its patterns joined with a comma. A RegExp: its literal.
  ['/a', 200, 'GET /a,/b/:id', '/a,/b/:id'],
  ['/b/3', 200, 'GET /a,/b/:id', '/a,/b/:id'],
  ['/files/12', 200, 'GET /^\\/files\\/(\\d+)$/', '/^\\/files\\/(\\d+)$/'],
  // A middleware mounted at a path that answers itself: its mount path.
  ['/static/app.css', 200, 'GET /static', '/static'],
  // Errors keep the route that failed, whichever error handler answers.
  ['/api/v2/fail', 500, 'GET /api/:version/fail', '/api/:version/fail'],
  ['/api/v2/own-error', 502, 'GET /api/:version/own-error', '/api/:version/own-error'],
  ['/throws/1', 500, 'GET /throws/:id', '/throws/:id'],
  ['/rejects/1', 500, 'GET /rejects/:id', '/rejects/:id'],
  // setRoute() in a handler wins over the framework's route.
  ['/custom/1', 200, 'GET /custom-name', '/custom-name'],
  // A route that answered and then called next() keeps its route.
  ['/answers-then-next/5', 200, 'GET /answers-then-next/:id', '/answers-then-next/:id'],
  // No route: the bare method, no http.route (the budget defaults judge it).
  ['/no/such/route', 404, 'GET', undefined],
];

/**
 * No route answers these either: under a mounted router that has no route for it; a route that
 * passed it on with next() (at the root, under a mounted router).
 */
const PASSED_ON = ['/api/v2/nope', '/maybe/3', '/api/v2/users/7/maybe'] as const;

let receiver: OtlpReceiver;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
});

afterAll(async () => {
  await receiver?.close();
});

const NAMING = [
  {
    naming: 'request-budget route naming (default)',
    env: {},
    passedOn: PASSED_ON.map((path) => [path, 404, 'GET', undefined] as Case),
    layerSpans: false,
  },
  {
    naming: 'instrumentation-express (REQUEST_BUDGET_EXPRESS_LAYER_SPANS=true)',
    env: { REQUEST_BUDGET_EXPRESS_LAYER_SPANS: 'true' },
    // Its names for these follow the last layer it entered (`GET /maybe/:id`, `GET /api/:version`,
    // and `GET /:id/maybe` for the route under the mounted router): not pinned here.
    passedOn: [] as Case[],
    layerSpans: true,
  },
] as const;

const EXPRESS = [
  { express: 'express 5', module: undefined, routes: ROUTES },
  // Express 4 leaves a rejected promise unhandled (the request hangs): that case is express 5's.
  { express: 'express 4', module: EXPRESS4_MODULE, routes: ROUTES.filter(([path]) => !path.startsWith('/rejects/')) },
];

describe.each(EXPRESS.flatMap((express) => NAMING.map((naming) => ({ ...express, ...naming }))))(
  '$express, $naming',
  ({ module, routes, env, passedOn, layerSpans }) => {
    let app: AppProcess;

    beforeAll(async () => {
      app = await startApp({
        script: 'test/fixtures/stacks/express-routes-app.js',
        env: {
          ...env,
          EXPRESS_MODULE: module,
          OTEL_SERVICE_NAME: 'express-routes-app',
          OTEL_TRACES_EXPORTER: 'otlp',
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
          OTEL_BSP_SCHEDULE_DELAY: '50',
          REQUEST_BUDGET_SUMMARY: 'false',
          REQUEST_BUDGET_ALERT_LOG: 'false',
        },
      });
    });

    afterAll(async () => {
      await app?.stop();
    });

    it.each([...routes, ...passedOn])('%s: %i, %s', async (path, status, name, route) => {
      const request = await tracedGet(`${app.url}${path}`);
      expect(request.response.status).toBe(status);
      const { server, trace } = await awaitServerSpan(receiver, request);
      expect([server.name, server.attributes['http.route']]).toEqual([name, route]);
      // The server span is the request's only SERVER span; express's layer spans only when asked
      // for (every request enters the app's last middleware).
      expect(trace.filter((s) => s.kind === OtlpSpanKind.SERVER)).toEqual([server]);
      expect(trace.some((s) => s.scope === EXPRESS_SCOPE)).toBe(layerSpans);
    });

    it('nothing reported on stderr', () => {
      expect(app.stderrLines.filter((line) => line.startsWith('request-budget:'))).toEqual([]);
    });
  },
);
