/**
 * Routes on every major framework. Each fixture app in test/fixtures/stacks serves the same three
 * routes (`/health`, `/users/:id`, `/users/:id/orders/:n`) on its own stack, queries PostgreSQL
 * through a pg pool of 5 as the role `rb_frameworks`, and runs a background query loop beside
 * the requests. For each stack: the server span is named after the route template and carries
 * `http.route`, the budget rule of that route judges it, and its `cost.db.queries` is what
 * pg_stat_statements counted, one request at a time and with 30 requests in flight.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { resolveConfig } from '../../packages/node/src/config';
import { setRoute } from '../../packages/node/src/route-naming';
import { startApp, type AppProcess } from '../support/app-process';
import { pgTruth, type PgTruth, type ServerDelta } from '../support/db-truth';
import { concurrently } from '../support/http';
import { OtlpSpanKind, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { awaitServerSpan, tracedGet, type TracedRequest } from '../support/traced-request';

/** The background loop's statement, as pg_stat_statements normalises it. */
const BACKGROUND = 'SELECT $1::text AS background';
const PG_SCOPE = '@opentelemetry/instrumentation-pg';

interface Stack {
  readonly name: string;
  readonly script: string;
  /** Spans other than the server span and pg's, by default, in each request's trace. */
  readonly frameworkSpans: readonly string[];
  /** A response header the app sets, and its value (the http app reports what setRoute returned). */
  readonly header?: readonly [string, string];
}

const STACKS: readonly Stack[] = [
  // @fastify/otel's `request` span stays (it hands over the route); its hook and handler spans are off.
  { name: 'Fastify 5 (@fastify/otel)', script: 'fastify-app.js', frameworkSpans: ['request'] },
  // The orders route is added after app.use(router.routes()), /users/:id comes from a nested router.
  { name: 'Koa 3 + @koa/router 15', script: 'koa-app.js', frameworkSpans: [] },
  // Under --require, @nestjs/platform-express (an ES module) imports express unpatched, but express
  // requires its `router` package, which request-budget's route naming patches.
  { name: 'NestJS 12 on Express', script: 'nest-express-app.js', frameworkSpans: [] },
  { name: 'NestJS 12 on Fastify', script: 'nest-fastify-app.js', frameworkSpans: ['request'] },
  { name: 'node:http with setRoute()', script: 'http-app.js', frameworkSpans: [], header: ['x-route-recorded', 'true'] },
];

/** Path requested, route template expected, statements it makes, budget rule, violations. */
const ROUTES: readonly (readonly [string, string, number, string, string[] | undefined])[] = [
  ['/users/7', '/users/:id', 2, 'GET /users/:id', ['db.queries 2>1']],
  ['/users/7/orders/4', '/users/:id/orders/:n', 5, 'GET /users/:id/orders/:n', undefined],
  ['/health', '/health', 0, 'GET /health', undefined],
];

let receiver: OtlpReceiver;
let truth: PgTruth;

beforeAll(async () => {
  [receiver, truth] = await Promise.all([startOtlpReceiver(), pgTruth('rb_frameworks')]);
});

afterAll(async () => {
  await Promise.all([receiver?.close(), truth?.close()]);
});

/** Statements of the requests in a delta: all of the role's but the background loop's. */
function requestStatements(delta: ServerDelta): number {
  return delta.statements - (delta.byStatement.get(BACKGROUND)?.calls ?? 0);
}

function attr(span: ReceivedSpan, name: string) {
  return span.attributes[name];
}

describe.each(STACKS)('$name', (stack) => {
  let app: AppProcess;

  beforeAll(async () => {
    app = await startApp({
      script: `test/fixtures/stacks/${stack.script}`,
      env: {
        OTEL_SERVICE_NAME: stack.script.replace(/\.js$/, ''),
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
        OTEL_BSP_SCHEDULE_DELAY: '50',
        REQUEST_BUDGET_FILE: 'test/fixtures/stacks/frameworks-budgets.yaml',
        REQUEST_BUDGET_SUMMARY: 'true',
        REQUEST_BUDGET_ALERT_LOG: 'false',
        DATABASE_URL: truth.url,
        PG_POOL_MAX: '5',
        BACKGROUND_INTERVAL_MS: '4',
      },
    });
  });

  afterAll(async () => {
    await app?.stop();
  });

  it.each(ROUTES)('%s: span named after %s, judged by its rule, queries as counted by PostgreSQL', async (path, route, queries, rule, violations) => {
    let request: TracedRequest | undefined;
    const delta = await truth.during(async () => {
      request = await tracedGet(`${app.url}${path}`);
    });
    expect(request!.response.status).toBe(200);
    if (stack.header !== undefined) expect(request!.response.headers.get(stack.header[0])).toBe(stack.header[1]);
    const { server, trace } = await awaitServerSpan(receiver, request!);

    expect(server.name).toBe(`GET ${route}`);
    expect(attr(server, 'http.route')).toBe(route);
    expect(attr(server, 'budget.rule')).toBe(rule);
    expect(attr(server, 'budget.breached')).toBe(violations !== undefined);
    expect(attr(server, 'budget.violations')).toEqual(violations);
    expect(requestStatements(delta)).toBe(queries);
    expect(attr(server, 'cost.db.queries')).toBe(requestStatements(delta));

    // The http SERVER span is the request's root; the framework's own spans are its children and
    // add nothing to the cost.
    expect(server.parentSpanId).toBe(request!.parentSpanId);
    expect(trace.filter((s) => s.kind === OtlpSpanKind.SERVER)).toEqual([server]);
    const framework = trace.filter((s) => s !== server && s.scope !== PG_SCOPE);
    expect(framework.map((s) => s.name)).toEqual(stack.frameworkSpans);
    for (const span of framework) expect([span.name, span.kind, span.parentSpanId]).toEqual([span.name, OtlpSpanKind.INTERNAL, server.spanId]);
    const queriesInTrace = trace.filter((s) => s.scope === PG_SCOPE && s.name.startsWith('pg.query'));
    expect(queriesInTrace).toHaveLength(queries);

    // The summary line names the route template, never the path.
    await app.waitForLine(new RegExp(`^request-budget: GET ${route.replace(/[/]/g, '\\/')} 200 \\S+ms queries=${queries} `), 5000, 'stderr');
  });

  it('an unrouted request keeps the bare method and falls to the budget defaults', async () => {
    const request = await tracedGet(`${app.url}/no/such/route`);
    expect(request.response.status).toBe(404);
    const { server } = await awaitServerSpan(receiver, request);
    expect([server.name, attr(server, 'http.route'), attr(server, 'budget.rule'), attr(server, 'cost.db.queries')]).toEqual(['GET', undefined, 'defaults', 0]);
  });

  it('30 requests in flight on a pool of 5 beside the background loop: every count exact, their sum what PostgreSQL ran for them', async () => {
    // Every third request reads a user (2 statements); the others read 1..30 orders (n + 1), in
    // a fixed scrambled order (7 is coprime with 30) so that a failure reproduces.
    const paths = Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? `/users/${i + 1}` : `/users/${i + 1}/orders/${((i * 7) % 30) + 1}`));
    const expected = paths.map((path) => {
      const orders = /\/orders\/(\d+)$/.exec(path);
      return orders === null ? { route: '/users/:id', queries: 2 } : { route: '/users/:id/orders/:n', queries: Number(orders[1]) + 1 };
    });
    let started: TracedRequest[] = [];
    const delta = await truth.during(async () => {
      started = await concurrently(30, (i) => tracedGet(`${app.url}${paths[i]}`));
    });
    let sum = 0;
    for (const [i, request] of started.entries()) {
      expect(request.response.status).toBe(200);
      const { server } = await awaitServerSpan(receiver, request);
      const queries = attr(server, 'cost.db.queries');
      expect({ path: paths[i], name: server.name, route: attr(server, 'http.route'), rule: attr(server, 'budget.rule'), queries }).toEqual({
        path: paths[i],
        name: `GET ${expected[i].route}`,
        route: expected[i].route,
        rule: `GET ${expected[i].route}`,
        queries: expected[i].queries,
      });
      sum += Number(queries);
    }
    expect(delta.byStatement.get(BACKGROUND)?.calls ?? 0).toBeGreaterThan(0);
    expect(sum).toBe(expected.reduce((total, e) => total + e.queries, 0));
    expect(sum).toBe(requestStatements(delta));
  });
});

describe('setRoute() outside a running request-budget', () => {
  it('records nothing and says so by its answer', () => {
    expect(setRoute('/users/:id')).toBe(false);
  });

  it('ignores a template that is not a string, saying so once on stderr', () => {
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(setRoute(42 as unknown as string)).toBe(false);
      expect(setRoute('' as string)).toBe(false);
      const lines = write.mock.calls.map(([text]) => String(text));
      expect(lines).toEqual([
        'request-budget: setRoute() needs the route template as a non-empty string (e.g. "/users/:id"), got number; the call is ignored\n',
      ]);
    } finally {
      write.mockRestore();
    }
  });
});

describe('framework span settings', () => {
  it.each([
    ['REQUEST_BUDGET_FASTIFY_HOOK_SPANS', 'fastifyHookSpans'],
    ['REQUEST_BUDGET_KOA_LAYER_SPANS', 'koaLayerSpans'],
  ] as const)('%s turns %s on; off by default', (variable, setting) => {
    const report = vi.fn();
    expect(resolveConfig({}, {}, report)[setting]).toBe(false);
    expect(resolveConfig({}, { [variable]: 'true' }, report)[setting]).toBe(true);
    expect(resolveConfig({ [setting]: false }, { [variable]: 'true' }, report)[setting]).toBe(false);
    expect(report).not.toHaveBeenCalled();
  });
});
