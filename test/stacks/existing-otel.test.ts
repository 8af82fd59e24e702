/**
 * request-budget inside an existing OpenTelemetry setup, end to end, with PostgreSQL's own count
 * of the statements (pg_stat_statements for the role rb_otelsetup) as the truth:
 * - the app's own NodeSDK with auto-instrumentations-node and requestBudgetComponents() spread in;
 * - auto-instrumentations-node's register beside request-budget's (two SDKs, two instances of
 *   most instrumentations): each statement and call counted once, and the problem reported;
 * - auto-instrumentations-node's register first: request-budget says it records nothing;
 * - request-budget's register alone with the app's instrumentation-knex.
 * Knex's spans sit over pg's in every setup: each statement is still counted once.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { pgTruth, type PgTruth } from '../support/db-truth';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';
import { OtlpSpanKind } from '../support/received-span';
import { awaitServerSpan, tracedGet } from '../support/traced-request';
import { expectExactInFlight, oneRequest } from './pg-requests';

const ROLE = 'rb_otelsetup';
const AUTO_REGISTER = '@opentelemetry/auto-instrumentations-node/register';
const OUR_REGISTER = '@request-budget/node/register';

let receiver: OtlpReceiver;
let truth: PgTruth;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  truth = await pgTruth(ROLE);
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
  await admin.connect();
  try {
    await admin.query('CREATE TABLE IF NOT EXISTS rbos_items (id int PRIMARY KEY, name text NOT NULL)');
    await admin.query("INSERT INTO rbos_items SELECT g, 'item-' || g FROM generate_series(1, 100) AS g ON CONFLICT (id) DO NOTHING");
  } finally {
    await admin.end();
  }
});

afterAll(async () => {
  await truth?.close();
  await receiver?.close();
});

type Setup =
  | 'own NodeSDK with requestBudgetComponents'
  | 'auto-instrumentations register beside ours'
  | 'register with instrumentation-knex'
  | 'auto-instrumentations register first';

function startSetup(setup: Setup): Promise<AppProcess> {
  const nodeArgs: Record<Setup, string[]> = {
    'own NodeSDK with requestBudgetComponents': ['--require', './test/fixtures/stacks/own-sdk-tracing.js'],
    'auto-instrumentations register beside ours': ['--require', OUR_REGISTER, '--require', AUTO_REGISTER],
    'register with instrumentation-knex': ['--require', OUR_REGISTER],
    'auto-instrumentations register first': ['--require', AUTO_REGISTER, '--require', OUR_REGISTER],
  };
  return startApp({
    script: 'test/fixtures/stacks/existing-otel-app.js',
    requireRegister: false,
    nodeArgs: nodeArgs[setup],
    timeoutMs: 30_000,
    env: {
      OTEL_SERVICE_NAME: 'existing-otel-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      OTEL_BSP_MAX_QUEUE_SIZE: '50000',
      // auto-instrumentations-node's SDK: no metrics or logs, no cloud metadata lookups.
      OTEL_METRICS_EXPORTER: 'none',
      OTEL_LOGS_EXPORTER: 'none',
      OTEL_NODE_RESOURCE_DETECTORS: 'env,host,os,process',
      DATABASE_URL: truth.url,
      PG_POOL_MAX: '5',
      BACKGROUND_INTERVAL_MS: '4',
      APP_KNEX_INSTRUMENTATION: setup === 'register with instrumentation-knex' ? '1' : undefined,
    },
  });
}

/** Each route's statements (and rows, each statement returning one row but BEGIN and COMMIT). */
const ROUTES = [
  { path: '/users/7', statements: 2, rows: 2, repeated: 1 },
  { path: '/users/7/orders/4', statements: 5, rows: 5, repeated: 4 },
  { path: '/knex/3', statements: 3, rows: 3, repeated: 3 },
  { path: '/knex-trx', statements: 4, rows: 2, repeated: 1 },
] as const;

/** What each setup reports on stderr, and must not. */
const WARNINGS: Record<Exclude<Setup, 'auto-instrumentations register first'>, { expected: RegExp[] }> = {
  'own NodeSDK with requestBudgetComponents': { expected: [] },
  'auto-instrumentations register beside ours': {
    expected: [
      /^request-budget: another OpenTelemetry SDK tried to register its tracer provider after request-budget's and was refused .*requestBudgetComponents\(\)/,
      /^request-budget: @opentelemetry\/instrumentation-undici is registered twice .* request-budget counts it once, from its own span/,
      /^request-budget: request-budget's @opentelemetry\/instrumentation-pg was replaced by another instance .* with request-budget's row hook added to it/,
    ],
  },
  'register with instrumentation-knex': { expected: [] },
};
const SETUP_PROBLEM = /registered twice|is active twice|was replaced|was registered before|tried to register/;

describe.each(Object.keys(WARNINGS) as (keyof typeof WARNINGS)[])('%s', (setup) => {
  let app: AppProcess;

  beforeAll(async () => {
    app = await startSetup(setup);
    // Opens every connection of the pg pool and of Knex's (Knex asks each new one its version).
    for (let round = 0; round < 2; round += 1) {
      await Promise.all(Array.from({ length: 6 }, () => fetch(`${app.url}/users/1`).then((r) => r.text())));
      await Promise.all(Array.from({ length: 6 }, () => fetch(`${app.url}/knex/1`).then((r) => r.text())));
    }
  });

  afterAll(async () => {
    await app?.stop();
  });

  it('counts each statement once, one request at a time, as PostgreSQL counted them', async () => {
    for (const route of ROUTES) {
      const result = await oneRequest(receiver, truth, app.url, route.path);
      expect({
        path: route.path,
        status: result.status,
        queries: result.queries,
        rows: result.rows,
        repeated: result.server.attributes['cost.db.repeated_count'],
      }).toEqual({
        path: route.path,
        status: 200,
        queries: route.statements,
        rows: route.rows,
        repeated: route.repeated,
      });
      expect({ path: route.path, ...result.serverCount }).toEqual({ path: route.path, statements: route.statements, rows: route.rows });
      if (route.path === '/knex/3') {
        // Both Knex's span and pg's for each statement, counted once.
        const statementSpans = (scope: string) => result.trace.filter((s) => s.scope === scope && typeof s.attributes['db.query.text'] === 'string').length;
        expect([statementSpans('@opentelemetry/instrumentation-knex'), statementSpans('@opentelemetry/instrumentation-pg')]).toEqual([3, 3]);
      }
    }
  });

  it('counts each request exactly with 30 in flight on a pool of 5 beside a background loop', async () => {
    await expectExactInFlight(receiver, truth, app.url, ROUTES);
  });

  it.each([
    ['/fetch', 1],
    ['/fetch?timed=1', 0],
    ['/http', 1],
  ])('counts the one outgoing call of %s once, untimed=%i', async (path, untimed) => {
    const request = await tracedGet(`${app.url}${path}`);
    const { server, trace } = await awaitServerSpan(receiver, request);
    expect(request.response.status).toBe(200);
    expect([server.attributes['cost.http_client.calls'], server.attributes['cost.http_client.untimed']]).toEqual([1, untimed]);
    const clientSpans = trace.filter((s) => s.kind === OtlpSpanKind.CLIENT && s.attributes['http.request.method'] === 'GET');
    // Beside auto-instrumentations-node's register, each fetch has two undici spans: one counted.
    const expectedSpans = setup === 'auto-instrumentations register beside ours' && path.startsWith('/fetch') ? 2 : 1;
    expect(clientSpans).toHaveLength(expectedSpans);
  });

  it('reports the setup problems it found, once each, and no others', () => {
    const problems = app.stderrLines.filter((line) => SETUP_PROBLEM.test(line));
    expect(problems).toHaveLength(WARNINGS[setup].expected.length);
    for (const expected of WARNINGS[setup].expected) expect(problems.filter((line) => expected.test(line))).toHaveLength(1);
  });
});

describe('auto-instrumentations register first', () => {
  it('says that request-budget receives no spans, and writes no cost record rather than a wrong one', async () => {
    const app = await startSetup('auto-instrumentations register first');
    try {
      await app.waitForLine(
        /^request-budget: another OpenTelemetry tracer provider was registered before request-budget's .* records no cost\. Fix: .*requestBudgetComponents\(\)/,
        5000,
        'stderr',
      );
      // The other SDK exports the request; it carries no cost record.
      const request = await tracedGet(`${app.url}/users/7`);
      const { server, trace } = await awaitServerSpan(receiver, request);
      expect(request.response.status).toBe(200);
      expect(trace.filter((s) => s.attributes['db.query.text'] !== undefined)).toHaveLength(2);
      expect(server.attributes['cost.db.queries']).toBeUndefined();
    } finally {
      await app.stop();
    }
  });
});
