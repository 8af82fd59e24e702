/**
 * postgres.js (`postgres` 4.x) and Drizzle ORM over it, end to end under
 * `node --require @request-budget/node/register`: each cost record is held against what
 * PostgreSQL itself counted for the app's role in pg_stat_statements, one request at a time,
 * then with 30 requests in flight on a pool of 5 beside a background query loop. An ES module
 * app under `--import` is checked too, and the same app under `--require`, where postgres.js
 * cannot be patched and says so.
 *
 * What counts: every statement the server runs for the request, BEGIN and COMMIT included (as
 * instrumentation-pg counts `client.query('BEGIN')`); a cursor is one statement however many
 * batches it is read in. Two things pg_stat_statements does not see, checked otherwise: a
 * statement that fails (it records completed ones only), and the rows of a cursor read in
 * batches (before PostgreSQL 16 it keeps the last fetch's only): there the server's count(*) of
 * the same statement is the truth.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { pgTruth, type PgTruth, type ServerDelta } from '../support/db-truth';
import { concurrently } from '../support/http';
import { OtlpSpanKind, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { awaitServerSpan, costOf, tracedGet } from '../support/traced-request';

const ROLE = 'rb_postgresjs';
// Start-up loads every instrumentation; on two busy shared cores that can take a while.
const START_TIMEOUT_MS = 40_000;
const BACKGROUND = 'SELECT $1::text AS background, now() AS at';
const LOOKUP = 'SELECT id, title FROM rbpgjs_books WHERE author_id = $1';
const DRIZZLE_LOOKUP = 'select "id", "author_id", "title" from "rbpgjs_books" where "rbpgjs_books"."author_id" = $1';
const CURSOR = (n: number) => `SELECT g AS id, md5(g::text) AS hash FROM generate_series(1, ${n}::int) AS g`;

/** The cost record a route must get, and what the server runs for it. */
interface Expected {
  readonly queries: number;
  readonly rows: number;
  readonly repeated: number;
  /** The most repeated statement, where one is repeated more than the others. */
  readonly statement?: string;
  readonly status?: number;
  /** Statements that fail: counted as queries, never completed, so not in pg_stat_statements. */
  readonly failing?: number;
  /** The rows come from a cursor of this many rows: the truth is count(*), not pg_stat_statements. */
  readonly cursorOf?: number;
}

const ROUTES: Record<string, Expected> = {
  '/queries/1': { queries: 1, rows: 1, repeated: 1, statement: 'SELECT $1::int AS i' },
  '/queries/6': { queries: 6, rows: 6, repeated: 6, statement: 'SELECT $1::int AS i' },
  '/n-plus-one': { queries: 6, rows: 15, repeated: 5, statement: LOOKUP },
  '/rows/5000': { queries: 1, rows: 5000, repeated: 1 },
  '/fail': { queries: 1, rows: 0, repeated: 1, status: 500, failing: 1 },
  '/transaction': { queries: 4, rows: 2, repeated: 1 },
  '/cursor/1050/100': { queries: 1, rows: 1050, repeated: 1, cursorOf: 1050 },
  '/for-each/700': { queries: 1, rows: 700, repeated: 1 },
  '/drizzle/n-plus-one': { queries: 6, rows: 15, repeated: 5, statement: DRIZZLE_LOOKUP },
  '/drizzle/transaction': { queries: 5, rows: 3, repeated: 1 },
};

let receiver: OtlpReceiver;
let truth: PgTruth;
let admin: pg.Client;
let app: AppProcess;

async function createTables(): Promise<void> {
  await admin.query(`CREATE TABLE IF NOT EXISTS rbpgjs_authors (id int PRIMARY KEY, name text NOT NULL)`);
  await admin.query(`CREATE TABLE IF NOT EXISTS rbpgjs_books (id int PRIMARY KEY, author_id int NOT NULL, title text NOT NULL)`);
  await admin.query(`CREATE TABLE IF NOT EXISTS rbpgjs_events (id serial PRIMARY KEY, note text NOT NULL)`);
  await admin.query('TRUNCATE rbpgjs_authors, rbpgjs_books, rbpgjs_events');
  await admin.query(`INSERT INTO rbpgjs_authors SELECT g, 'author ' || g FROM generate_series(1, 5) AS g`);
  await admin.query(`INSERT INTO rbpgjs_books SELECT g, (g - 1) / 2 + 1, 'book ' || g FROM generate_series(1, 10) AS g`);
}

function otlpEnv(service: string): Record<string, string> {
  return {
    OTEL_SERVICE_NAME: service,
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    OTEL_BSP_SCHEDULE_DELAY: '50',
    OTEL_BSP_MAX_QUEUE_SIZE: '20000',
    DATABASE_URL: truth.url,
  };
}

beforeAll(async () => {
  [receiver, truth] = await Promise.all([startOtlpReceiver(), pgTruth(ROLE)]);
  admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
  await admin.connect();
  await createTables();
  app = await startApp({
    script: 'test/fixtures/stacks/postgres-js-app.js',
    env: { ...otlpEnv('postgres-js-app'), PG_POOL_MAX: '5', BACKGROUND_INTERVAL_MS: '3' },
    timeoutMs: START_TIMEOUT_MS,
  });
  // Open every connection of the pool, and let postgres.js look its types up (a statement of
  // its own, once per pool), before anything is measured.
  await concurrently(10, () => fetch(`${app.url}/queries/2`).then((r) => r.text()));
});

afterAll(async () => {
  await app?.stop();
  await admin?.end();
  await Promise.all([truth?.close(), receiver?.close()]);
});

/** The server's delta without the background loop's statements (charged to no request). */
function withoutBackground(delta: ServerDelta): ServerDelta {
  const byStatement = new Map([...delta.byStatement].filter(([text]) => text !== BACKGROUND));
  const sum = (key: 'calls' | 'rows') => [...byStatement.values()].reduce((total, s) => total + s[key], 0);
  return { statements: sum('calls'), rows: sum('rows'), byStatement };
}

function cost(server: ReceivedSpan) {
  return {
    queries: server.attributes['cost.db.queries'],
    rows: server.attributes['cost.db.rows'],
    repeated: server.attributes['cost.db.repeated_count'],
    statement: server.attributes['cost.db.repeated_statement'],
  };
}

/** The query spans of a request's trace, in the order they started. */
const querySpansOf = (trace: ReceivedSpan[]) =>
  trace.filter((s) => s.attributes['db.system.name'] === 'postgresql').sort((a, b) => (a.startTimeUnixNano < b.startTimeUnixNano ? -1 : 1));

describe('one request at a time, against pg_stat_statements', () => {
  it.each(Object.entries(ROUTES))('%s', async (path, expected) => {
    let result: Awaited<ReturnType<typeof costOf>> | undefined;
    const delta = withoutBackground(await truth.during(async () => (result = await costOf(receiver, `${app.url}${path}`))));
    const { server, trace, response } = result!;
    expect(response.status).toBe(expected.status ?? 200);
    const got = cost(server);
    expect(got).toEqual({ queries: expected.queries, rows: expected.rows, repeated: expected.repeated, statement: got.statement });
    if (expected.statement !== undefined) expect(got.statement).toBe(expected.statement);

    // The server's side: the statements it completed, their rows, the most repeated one.
    expect(delta.statements).toBe(expected.queries - (expected.failing ?? 0));
    if (expected.cursorOf === undefined) {
      expect(delta.rows).toBe(expected.rows);
    } else {
      const { rows } = await admin.query<{ count: number }>(`SELECT count(*)::int AS count FROM (${CURSOR(expected.cursorOf)}) AS q`);
      expect(rows[0].count).toBe(expected.rows);
    }
    const mostCalls = Math.max(0, ...[...delta.byStatement.values()].map((s) => s.calls));
    expect(mostCalls).toBe(expected.failing === undefined ? expected.repeated : 0);
    if (expected.statement !== undefined) expect(delta.byStatement.get(expected.statement)?.calls).toBe(expected.repeated);

    // Every query is a CLIENT span in the request's own trace.
    expect(querySpansOf(trace).map((s) => s.kind)).toEqual(Array(expected.queries).fill(OtlpSpanKind.CLIENT));
  });

  it('the failing query: an error span with the SQLSTATE', async () => {
    const { trace } = await costOf(receiver, `${app.url}/fail`);
    const [span] = querySpansOf(trace);
    expect(span.name).toBe('SELECT test');
    expect(span.status.code).toBe(2);
    expect(span.attributes).toEqual({
      'db.system.name': 'postgresql',
      'db.namespace': 'test',
      'db.query.text': 'SELECT * FROM rbpgjs_table_that_does_not_exist',
      'db.operation.name': 'SELECT',
      'server.address': '127.0.0.1',
      'server.port': 5432,
      'db.response.status_code': '42P01',
      'error.type': '42P01',
    });
  });

  it('the transaction: BEGIN, INSERT, SELECT and COMMIT, each a span of the request', async () => {
    const { trace } = await costOf(receiver, `${app.url}/transaction`);
    expect(querySpansOf(trace).map((s) => [s.name, s.attributes['db.query.text'], s.attributes['db.response.returned_rows']])).toEqual([
      ['BEGIN test', 'begin ', 0],
      ['INSERT test', 'INSERT INTO rbpgjs_events (note) VALUES ($1) RETURNING id', 1],
      ['SELECT test', 'SELECT count(*)::int AS count FROM rbpgjs_events', 1],
      ['COMMIT test', 'commit', 0],
    ]);
  });

  it('no diagnostics: postgres.js was patched on require', () => {
    expect(app.stderrLines.filter((line) => line.startsWith('request-budget:'))).toEqual([]);
  });
});

describe('30 requests in flight on a pool of 5, beside a background query loop', () => {
  // Every route, distinct query counts among them, in a fixed scrambled order.
  const mix = [
    ...Array.from({ length: 10 }, (_, i) => `/queries/${i + 1}`),
    ...Array(4).fill('/n-plus-one'),
    ...Array(4).fill('/drizzle/n-plus-one'),
    ...Array(3).fill('/transaction'),
    ...Array(2).fill('/drizzle/transaction'),
    ...Array(2).fill('/cursor/1050/100'),
    ...Array(2).fill('/for-each/700'),
    ...Array(2).fill('/rows/5000'),
    '/fail',
  ];
  const paths = mix.map((_, i) => mix[(i * 7) % mix.length]);
  const expectedFor = (path: string): Expected => {
    const n = /^\/queries\/(\d+)$/.exec(path);
    return n === null ? ROUTES[path] : { queries: Number(n[1]), rows: Number(n[1]), repeated: Number(n[1]), statement: 'SELECT $1::int AS i' };
  };

  it('charges every request exactly its own statements, and the background loop to none', async () => {
    expect(paths).toHaveLength(30);
    expect(new Set(paths)).toEqual(new Set(mix));
    let started: Awaited<ReturnType<typeof tracedGet>>[] = [];
    const fullDelta = await truth.during(async () => (started = await concurrently(30, (i) => tracedGet(`${app.url}${paths[i]}`))));
    const delta = withoutBackground(fullDelta);

    const wrong: unknown[] = [];
    let queries = 0;
    let completed = 0;
    for (const [i, request] of started.entries()) {
      const expected = expectedFor(paths[i]);
      const { server, trace } = await awaitServerSpan(receiver, request);
      const got = cost(server);
      const want = {
        status: expected.status ?? 200,
        queries: expected.queries,
        rows: expected.rows,
        repeated: expected.repeated,
        statement: expected.statement ?? got.statement,
      };
      const spans = querySpansOf(trace);
      const actual = {
        status: request.response.status,
        ...got,
        spans: spans.length,
        background: spans.filter((s) => s.attributes['db.query.text'] === BACKGROUND).length,
      };
      if (JSON.stringify(actual) !== JSON.stringify({ ...want, spans: expected.queries, background: 0 })) wrong.push({ path: paths[i], actual, want });
      queries += expected.queries;
      completed += expected.queries - (expected.failing ?? 0);
    }
    expect(wrong).toEqual([]);
    // The server completed exactly the statements the requests were charged with.
    expect(delta.statements).toBe(completed);
    expect(queries).toBe(completed + 1);

    // The background loop ran meanwhile, and its spans are roots of their own (no request's).
    expect(fullDelta.byStatement.get(BACKGROUND)?.calls ?? 0).toBeGreaterThan(10);
    const background = receiver.spans.filter((s) => s.attributes['db.query.text'] === BACKGROUND);
    expect(background.length).toBeGreaterThan(10);
    expect(background.filter((s) => s.parentSpanId !== '')).toEqual([]);
    expect(receiver.serverSpans().filter((s) => s.attributes['cost.db.repeated_statement'] === BACKGROUND)).toEqual([]);
  });
});

describe('other ways to load it', () => {
  // Started together: app start-up is most of these tests' time.
  const others: Record<'off' | 'esmImport' | 'esmRequire', AppProcess> = {} as never;
  beforeAll(async () => {
    [others.off, others.esmImport, others.esmRequire] = await Promise.all([
      startApp({
        script: 'test/fixtures/stacks/postgres-js-app.js',
        env: { ...otlpEnv('postgres-js-off'), OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'postgres' },
        timeoutMs: START_TIMEOUT_MS,
      }),
      startApp({
        script: 'test/fixtures/stacks/postgres-js-esm-app.mjs',
        requireRegister: false,
        nodeArgs: ['--import', '@request-budget/node/register'],
        env: otlpEnv('postgres-js-esm-import'),
        timeoutMs: START_TIMEOUT_MS,
      }),
      startApp({ script: 'test/fixtures/stacks/postgres-js-esm-app.mjs', env: otlpEnv('postgres-js-esm-require'), timeoutMs: START_TIMEOUT_MS }),
    ]);
  });
  afterAll(async () => {
    await Promise.all(Object.values(others).map((other) => other?.stop()));
  });

  it('OTEL_NODE_DISABLED_INSTRUMENTATIONS=postgres leaves postgres.js uncounted, as it was without it', async () => {
    const { server, response } = await costOf(receiver, `${others.off.url}/n-plus-one`);
    expect(response.body).toBe('{"authors":5,"books":10}');
    expect(cost(server)).toEqual({ queries: 0, rows: 0, repeated: 0, statement: undefined });
  });

  it('--import: postgres.js imported as an ES module is patched, cursor rows summed', async () => {
    const esm = others.esmImport;
    const nPlusOne = await costOf(receiver, `${esm.url}/n-plus-one`);
    expect(cost(nPlusOne.server)).toEqual({ queries: 6, rows: 15, repeated: 5, statement: LOOKUP });
    const cursor = await costOf(receiver, `${esm.url}/cursor/1050/100`);
    expect(cost(cursor.server)).toMatchObject({ queries: 1, rows: 1050 });
    expect(esm.stderrLines.filter((line) => line.startsWith('request-budget:'))).toEqual([]);
  });

  it('--require with an ES module app: still counted, and the lost cursor rows are said once', async () => {
    const esm = others.esmRequire;
    const nPlusOne = await costOf(receiver, `${esm.url}/n-plus-one`);
    expect(cost(nPlusOne.server)).toEqual({ queries: 6, rows: 15, repeated: 5, statement: LOOKUP });
    // Without the module hook, a cursor's rows are the server's count for its last batch.
    const cursor = await costOf(receiver, `${esm.url}/cursor/1050/100`);
    expect(cost(cursor.server)).toMatchObject({ queries: 1, rows: 50 });
    expect(esm.stderrLines.filter((line) => line.startsWith('request-budget:'))).toEqual([
      "request-budget: postgres.js was loaded without request-budget's module hook (before request-budget started, or imported as an ES module without --import): its queries are counted, but a .cursor() query counts only the rows of its last batch; start the app with node --require @request-budget/node/register (CommonJS) or --import @request-budget/node/register (ES modules)",
    ]);
  });
});
