/**
 * measureCost over HTTP, as teams test routes: the app's server runs in the test process and
 * the test sends it requests with supertest (the app object, served on an ephemeral port for
 * each request), fetch or http.request. Everything the route does is counted, each request
 * listed with its route, against the real PostgreSQL; pg_stat_statements confirms every count.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shutdown, start } from '../packages/node/src/index';
import { budgetMatchers, measureCost, type BudgetMatchers, type MeasuredCost } from '../packages/node/src/testing';
import type { PgTruth } from './support/db-truth';

expect.extend(budgetMatchers);
declare module 'vitest' {
  interface Matchers<R extends void | Promise<void> = void | Promise<void>, T = unknown> extends BudgetMatchers<R> {}
}

const require = createRequire(import.meta.url);
type Pool = { query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>; end(): Promise<void> };
type Sample = {
  createApp(pool: Pool, env?: Record<string, string>): http.RequestListener;
  createPool(options: { url: string; max: number }): Pool;
  orderTotal(pool: Pool, userId: number): Promise<number>;
};

const ROLE = 'rb_cigate_m';
let truth: PgTruth;
let pool: Pool;
let sample: Sample;
let base: string;
let nPlusOneBase: string;
const servers: http.Server[] = [];

async function listen(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  start({ traceExporters: [], summary: false, shutdownOnExit: false, instrumentations: ['http', 'express', 'pg', 'undici'] });
  // Everything that loads pg comes after start(), so the instrumentations patch it (measureCost
  // refuses to measure otherwise).
  const { pgTruth } = await import('./support/db-truth');
  truth = await pgTruth(ROLE);
  await require('./fixtures/ci-gate/schema.js').ensureSchema();
  sample = require('./fixtures/ci-gate/app.js') as Sample;
  pool = sample.createPool({ url: truth.url, max: 5 });
  base = await listen(sample.createApp(pool, {}));
  nPlusOneBase = await listen(sample.createApp(pool, { CIGATE_N_PLUS_ONE: '1' }));
});

afterAll(async () => {
  for (const server of servers) await new Promise((resolve) => server.close(resolve));
  await pool?.end();
  await truth?.close();
  await shutdown();
});

const ORDERS_STATEMENT = 'SELECT id, total FROM rbcg_orders WHERE user_id = $1 ORDER BY id';

describe('measureCost over HTTP in the same process', () => {
  it('counts the queries of the route a fetch reaches, not the fetch itself', async () => {
    let cost: MeasuredCost | undefined;
    const server = await truth.during(async () => {
      cost = await measureCost(async () => {
        const response = await fetch(`${base}/users-with-orders`);
        expect(response.status).toBe(200);
        expect(await response.json()).toHaveLength(20);
      });
    });
    expect(server.statements).toBe(2);
    expect(cost).toMatchObject({ queries: 2, rows: 60, repeatedCount: 1, httpClientCalls: 0, httpClientUntimed: 0 });
    expect(cost!.requests).toHaveLength(1);
    expect(cost!.requests[0]).toMatchObject({ route: 'GET /users-with-orders', status: 200, queries: 2, rows: 60 });
    expect(cost!.direct).toMatchObject({ route: 'measureCost', queries: 0, httpClientCalls: 0 });
  });

  it('finds the N+1 behind a URL: 21 queries, 20 of one statement, and fails a budget of 3', async () => {
    let cost: MeasuredCost | undefined;
    const server = await truth.during(async () => {
      cost = await measureCost(() => fetch(`${nPlusOneBase}/users-with-orders`).then((r) => r.text()));
    });
    expect(server.statements).toBe(21);
    expect(server.byStatement.get(ORDERS_STATEMENT)).toEqual({ calls: 20, rows: 40 });
    expect(cost).toMatchObject({ queries: 21, rows: 60, repeatedCount: 20, repeatedStatement: ORDERS_STATEMENT, httpClientCalls: 0 });
    expect(() => expect(cost).toBeWithinBudget({ queries: 3 })).toThrow(
      [
        'cost exceeded the budget {"queries":3}:',
        '  db.queries 21>3',
        'statements (21 queries):',
        `  20× ${ORDERS_STATEMENT}`,
        '  1× SELECT id, name FROM rbcg_users ORDER BY id',
        'requests (1):',
        `  GET /users-with-orders 200: 21 queries, 20× ${ORDERS_STATEMENT}`,
      ].join('\n'),
    );
  });

  it('counts the route supertest reaches on the app object, not supertest’s own request', async () => {
    const app = sample.createApp(pool, {});
    let cost: MeasuredCost | undefined;
    const server = await truth.during(async () => {
      // supertest sends nothing until the Test is awaited: measureCost awaits it inside the measurement.
      cost = await measureCost(() => request(app).get('/users-with-orders').expect(200));
    });
    expect(server.statements).toBe(2);
    expect(server.byStatement.get('SELECT id, name FROM rbcg_users ORDER BY id')).toEqual({ calls: 1, rows: 20 });
    expect(cost).toMatchObject({ queries: 2, rows: 60, repeatedCount: 1, httpClientCalls: 0, httpClientUntimed: 0 });
    expect(cost!.requests.map((r) => [r.route, r.status, r.queries, r.rows])).toEqual([['GET /users-with-orders', 200, 2, 60]]);
    expect(cost!.direct).toMatchObject({ route: 'measureCost', queries: 0, httpClientCalls: 0 });
    expect(cost).toBeWithinBudget({ queries: 2, repeatedQueries: 1 });
  });

  it('finds the N+1 behind supertest and fails its budget, with the statement', async () => {
    const app = sample.createApp(pool, { CIGATE_N_PLUS_ONE: '1' });
    let cost: MeasuredCost | undefined;
    let body: unknown;
    const server = await truth.during(async () => {
      cost = await measureCost(async () => {
        body = (await request(app).get('/users-with-orders').expect(200)).body;
      });
    });
    expect(body).toHaveLength(20);
    expect(server.statements).toBe(21);
    expect(server.byStatement.get(ORDERS_STATEMENT)).toEqual({ calls: 20, rows: 40 });
    expect(cost).toMatchObject({ queries: 21, rows: 60, repeatedCount: 20, repeatedStatement: ORDERS_STATEMENT, httpClientCalls: 0 });
    expect(cost!.requests.map((r) => [r.route, r.status, r.queries])).toEqual([['GET /users-with-orders', 200, 21]]);
    expect(() => expect(cost).toBeWithinBudget({ queries: 2 })).toThrow('cost exceeded the budget {"queries":2}:\n  db.queries 21>2\n');
  });

  it('counts several supertest requests on one app, a 404 included, each with its route', async () => {
    const app = sample.createApp(pool, { CIGATE_LEAN: '1' });
    let statuses: number[] = [];
    let cost: MeasuredCost | undefined;
    const server = await truth.during(async () => {
      cost = await measureCost(async () => {
        const found = await request(app).get('/users/4');
        const missing = await request(app).get('/users/999');
        statuses = [found.status, missing.status];
        expect(JSON.parse(found.text)).toEqual({ id: 4, name: 'user 4', orders: 2 });
      });
    });
    expect(statuses).toEqual([200, 404]);
    expect(server.statements).toBe(2 + 1);
    expect(cost).toMatchObject({ queries: 3, rows: 2, httpClientCalls: 0 });
    expect(cost!.requests.map((r) => [r.route, r.status, r.queries])).toEqual([
      ['GET /users/:id', 200, 2],
      ['GET /users/:id', 404, 1],
    ]);
  });

  it('counts http.request to the app’s server alike', async () => {
    let cost: MeasuredCost | undefined;
    const server = await truth.during(async () => {
      cost = await measureCost(
        () =>
          new Promise<void>((resolve, reject) => {
            http.get(`${base}/users/3`, (res) => res.resume().on('end', resolve)).on('error', reject);
          }),
      );
    });
    expect(server.statements).toBe(3);
    expect(cost).toMatchObject({ queries: 3, rows: 3, httpClientCalls: 0 });
    expect(cost!.requests.map((r) => [r.route, r.status, r.queries])).toEqual([['GET /users/:id', 200, 3]]);
  });

  it('adds up several requests and the code’s own queries, judging N+1 per request', async () => {
    const cost = await measureCost(async () => {
      await fetch(`${base}/users/1`).then((r) => r.text());
      await fetch(`${base}/users/2`).then((r) => r.text());
      await sample.orderTotal(pool, 1);
    });
    expect(cost).toMatchObject({ queries: 7, repeatedCount: 1, httpClientCalls: 0 });
    expect(cost.direct).toMatchObject({ queries: 1 });
    expect(cost.requests.map((r) => r.queries)).toEqual([3, 3]);
    // Each request ran the user lookup once: no request repeated it.
    expect(cost).toBeWithinBudget({ queries: 7, repeatedQueries: 1 });
    expect(cost.statements.find((s) => s.fingerprint === 'SELECT id, name FROM rbcg_users WHERE id = $1')).toEqual({
      fingerprint: 'SELECT id, name FROM rbcg_users WHERE id = $1',
      count: 2,
    });
  });

  it('measures a function called directly, as before', async () => {
    const cost = await measureCost(() => sample.orderTotal(pool, 2));
    expect(cost).toMatchObject({ queries: 1, rows: 1, requests: [] });
  });

  it('says so, once, when a request to this machine was served by another process', async () => {
    const { spawn } = await import('node:child_process');
    const other = spawn(
      process.execPath,
      ['-e', "require('http').createServer((q, s) => s.end('ok')).listen(0, '127.0.0.1', function () { console.log(this.address().port) })"],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const port = await new Promise<string>((resolve) => other.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString().trim())));
      const written: string[] = [];
      const write = process.stderr.write;
      process.stderr.write = ((chunk: string) => (written.push(String(chunk)), true)) as typeof process.stderr.write;
      let cost: MeasuredCost;
      try {
        cost = await measureCost(() => fetch(`http://127.0.0.1:${port}/elsewhere`).then((r) => r.text()));
        await measureCost(() => fetch(`http://127.0.0.1:${port}/again`).then((r) => r.text()));
      } finally {
        process.stderr.write = write;
      }
      expect(cost).toMatchObject({ queries: 0, httpClientCalls: 1, requests: [] });
      expect(written).toEqual([
        `request-budget: measureCost: http://127.0.0.1:${port}/elsewhere was served by another process (no server of this process received it), so the queries behind it are not in the measurement; ` +
          'serve the app in the test process (supertest(app), or app.listen() in the test setup) to measure what its routes cost\n',
      ]);
    } finally {
      other.kill();
    }
  });

  it('attributes 30 concurrent measurements exactly on a pool of 5, with background queries beside them', async () => {
    let running = true;
    const background = (async () => {
      while (running) await pool.query('SELECT $1::text AS background', ['tick']);
    })();
    try {
      const users = Array.from({ length: 30 }, (_, i) => (i % 20) + 1);
      const server = await truth.during(async () => {
        const costs = await Promise.all(
          users.map((user, i) =>
            measureCost(() => fetch(`${i % 2 === 0 ? base : nPlusOneBase}/${i % 3 === 0 ? `users/${user}` : 'users-with-orders'}`).then((r) => r.text())),
          ),
        );
        costs.forEach((cost, i) => {
          const expected = i % 3 === 0 ? 3 : i % 2 === 0 ? 2 : 21;
          expect([i, cost.queries, cost.requests.length, cost.direct.queries]).toEqual([i, expected, 1, 0]);
        });
      });
      // The server ran exactly what the measurements counted, besides the background loop.
      const counted = users.reduce((sum, _user, i) => sum + (i % 3 === 0 ? 3 : i % 2 === 0 ? 2 : 21), 0);
      const backgroundCalls = server.byStatement.get('SELECT $1::text AS background')?.calls ?? 0;
      expect(server.statements - backgroundCalls).toBe(counted);
    } finally {
      running = false;
      await background;
    }
  });

  it('attributes 30 concurrent supertest measurements exactly on a pool of 5, with background queries beside them', async () => {
    const apps = [sample.createApp(pool, {}), sample.createApp(pool, { CIGATE_N_PLUS_ONE: '1' })];
    let running = true;
    const background = (async () => {
      while (running) await pool.query('SELECT $1::text AS background', ['tock']);
    })();
    try {
      const expected = (i: number) => (i % 3 === 0 ? 3 : i % 2 === 0 ? 2 : 21);
      const server = await truth.during(async () => {
        const costs = await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            measureCost(() =>
              request(apps[i % 2]!)
                .get(i % 3 === 0 ? `/users/${(i % 20) + 1}` : '/users-with-orders')
                .expect(200),
            ),
          ),
        );
        costs.forEach((cost, i) => {
          expect([i, cost.queries, cost.requests.map((r) => r.queries), cost.direct.queries]).toEqual([i, expected(i), [expected(i)], 0]);
        });
      });
      const counted = Array.from({ length: 30 }, (_, i) => expected(i)).reduce((sum, n) => sum + n, 0);
      const backgroundCalls = server.byStatement.get('SELECT $1::text AS background')?.calls ?? 0;
      expect(backgroundCalls).toBeGreaterThan(0);
      expect(server.statements - backgroundCalls).toBe(counted);
      expect(server.byStatement.get(ORDERS_STATEMENT)?.calls).toBe(20 * 10);
    } finally {
      running = false;
      await background;
    }
  });
});
