/**
 * mysql2's callback API and streams (and Knex's stream on mysql2), end to end: each cost record
 * is held against MariaDB's general log for the request's own tag, one request at a time and
 * with many in flight on a small pool beside a background query loop.
 */
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { mariadbTruth, type MariaDbTruth } from '../support/db-truth';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';
import { countTagged, expectExactAttribution, runTagged } from './tagged-requests';

const USER = 'rb_mysql2';
const TABLE_ROWS = 1000;

let receiver: OtlpReceiver;
let truth: MariaDbTruth;
const apps: Record<number, AppProcess> = {};

async function createTable(): Promise<void> {
  const admin = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root', database: 'test' });
  try {
    await admin.query('CREATE TABLE IF NOT EXISTS rbmy_rows (id INT PRIMARY KEY, name VARCHAR(32) NOT NULL)');
    const [[{ count }]] = await admin.query<(mysql.RowDataPacket & { count: number })[]>('SELECT COUNT(*) AS count FROM rbmy_rows');
    if (Number(count) !== TABLE_ROWS) {
      await admin.query('DELETE FROM rbmy_rows');
      const values = Array.from({ length: TABLE_ROWS }, (_, i) => [i + 1, `row-${i + 1}`]);
      await admin.query('INSERT INTO rbmy_rows (id, name) VALUES ?', [values]);
    }
  } finally {
    await admin.end();
  }
}

function startMysqlApp(poolMax: number): Promise<AppProcess> {
  return startApp({
    // Starting takes seconds when the shared machine is busy.
    timeoutMs: 40_000,
    script: 'test/fixtures/stacks/mysql2-app.js',
    env: {
      OTEL_SERVICE_NAME: 'mysql2-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_METRICS_EXPORTER: 'none',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      OTEL_BSP_MAX_QUEUE_SIZE: '20000',
      MYSQL_USER: USER,
      MYSQL_POOL_MAX: String(poolMax),
      // Every tick makes two statements; MariaDB's general log keeps them all, so not too many.
      BACKGROUND_INTERVAL_MS: '20',
    },
  });
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  truth = await mariadbTruth(USER);
  await createTable();
  [apps[2], apps[5]] = await Promise.all([startMysqlApp(2), startMysqlApp(5)]);
  // Open every connection of both pools (and Knex's) before anything is measured.
  for (const app of Object.values(apps)) {
    await Promise.all(Array.from({ length: 5 }, () => fetch(`${app.url}/cb/conn-query/1?tag=warmup`)));
    await Promise.all(Array.from({ length: 5 }, () => fetch(`${app.url}/knex/1?tag=warmup`)));
  }
});

afterAll(async () => {
  await Promise.all(Object.values(apps).map((app) => app.stop()));
  await truth?.close();
  await receiver?.close();
});

describe('callbacks: a statement issued from another statement\u2019s callback', () => {
  it('one request at a time: each request exactly its statements', async () => {
    const cases: [path: string, statements: number][] = [
      ['/cb/pool-query/1', 1],
      ['/cb/pool-query/4', 4],
      ['/cb/pool-execute/3', 3],
      ['/cb/conn-query/5', 5],
      ['/cb/mixed/6', 6],
      ['/knex/3', 3],
    ];
    const { results, delta } = await runTagged(
      receiver,
      truth,
      apps[2].url,
      cases.map(([path]) => path),
      { prefix: 'one', oneAtATime: true },
    );
    expect(results.map((r) => [r.path, r.serverStatements, r.queries, r.rows])).toEqual(cases.map(([path, n]) => [path, n, n, n]));
    expectExactAttribution(results, delta, 'background');
  });

  it('40 nested-callback requests in flight on a pool of 2: every request exact', async () => {
    // The measurement from the issue: pool.query callbacks nesting 1..8 deep.
    const paths = Array.from({ length: 40 }, (_, i) => `/cb/pool-query/${(i % 8) + 1}`);
    const { results, delta } = await runTagged(receiver, truth, apps[2].url, paths, { prefix: 'cb40' });
    expect(results.map((r) => r.serverStatements)).toEqual(paths.map((_, i) => (i % 8) + 1));
    expectExactAttribution(results, delta, 'background');
    expect(countTagged(delta, 'background')).toBeGreaterThan(0);
  });

  it('30 requests in flight on a pool of 5, every entry point mixed, beside the background loop', async () => {
    const kinds = ['/cb/pool-query/3', '/cb/pool-execute/4', '/cb/conn-query/5', '/cb/mixed/7', '/knex/2', '/stream/events/40'];
    const paths = Array.from({ length: 30 }, (_, i) => kinds[i % kinds.length]);
    const { results, delta } = await runTagged(receiver, truth, apps[5].url, paths, { prefix: 'mix30' });
    expectExactAttribution(results, delta, 'background');
    expect(countTagged(delta, 'background')).toBeGreaterThan(0);
  });
});

describe('streams: one statement, rows = every row streamed', () => {
  it('one request at a time: each stream one statement with all its rows', async () => {
    const cases: [path: string, statements: number, rows: number][] = [
      ['/stream/query/250', 1, 250],
      ['/stream/execute/300', 1, 300],
      ['/stream/pool/120', 1, 120],
      ['/stream/knex/400', 1, 400],
      ['/stream/query/1000', 1, TABLE_ROWS],
      ['/stream/query/0', 1, 0],
      // A second statement from the query's 'end' listener: its one row counts too.
      ['/stream/events/75', 2, 76],
      // The consumer stops after 10 rows: counted until the stream closes, with the rows it received.
      ['/stream/destroy/500?take=10', 1, 10],
    ];
    const { results, delta } = await runTagged(
      receiver,
      truth,
      apps[2].url,
      cases.map(([path]) => path),
      { prefix: 'stream', oneAtATime: true },
    );
    expect(results.map((r) => [r.path, r.serverStatements, r.queries, r.rows])).toEqual(cases.map(([path, n, rows]) => [path, n, n, rows]));
    // What the app itself received from each stream.
    expect(results.map((r) => JSON.parse(r.body).rows)).toEqual([250, 300, 120, 400, TABLE_ROWS, 0, 75, 10]);
    expectExactAttribution(results, delta, 'background');
  });

  it('a streamed query the server rejects is one query, with no rows', async () => {
    const { results, delta } = await runTagged(receiver, truth, apps[2].url, ['/stream/fail'], { prefix: 'fail', oneAtATime: true });
    expect(results[0].status).toBe(500);
    expect([results[0].serverStatements, results[0].queries, results[0].rows]).toEqual([1, 1, 0]);
    const span = results[0].trace.find((s) => String(s.attributes['db.query.text']).includes('rbmy_missing'));
    expect(span?.status.code).toBe(2);
    expect(countTagged(delta, results[0].tag)).toBe(1);
  });

  it('30 streams in flight on a pool of 5: every row count exact', async () => {
    const kinds = ['/stream/query/', '/stream/execute/', '/stream/pool/', '/stream/knex/', '/stream/events/'];
    const limits = Array.from({ length: 30 }, (_, i) => 10 + ((i * 37) % 200));
    const paths = limits.map((limit, i) => `${kinds[i % kinds.length]}${limit}`);
    const { results, delta } = await runTagged(receiver, truth, apps[5].url, paths, { prefix: 'stream30' });
    expectExactAttribution(results, delta, 'background');
    const events = (i: number) => kinds[i % kinds.length] === '/stream/events/';
    expect(results.map((r) => r.rows)).toEqual(limits.map((limit, i) => (events(i) ? limit + 1 : limit)));
  });
});

describe('diagnostics', () => {
  it('the receiver refused no export', () => {
    expect(receiver.rejections).toEqual([]);
  });

  it('the apps reported no problem on stderr', () => {
    for (const app of Object.values(apps)) expect(app.stderrLines.filter((line) => line.startsWith('request-budget:'))).toEqual([]);
  });
});
