/**
 * The test helper as an app's own test suite uses it: request-budget started in the test
 * process, the pg driver loaded after it, a real PostgreSQL.
 */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shutdown, start, withBudget } from '../packages/node/src/index';
import { budgetMatchers, measureCost, type BudgetMatchers } from '../packages/node/src/testing';

expect.extend(budgetMatchers);
declare module 'vitest' {
  interface Matchers<R extends void | Promise<void> = void | Promise<void>, T = unknown> extends BudgetMatchers<R> {}
}

type Pool = { query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>; end(): Promise<void> };
let pool: Pool;

beforeAll(() => {
  start({ traceExporters: [], summary: false, shutdownOnExit: false, instrumentations: ['pg'] });
  // Loaded after start(), through require, so the instrumentation patches it.
  const { Pool } = createRequire(import.meta.url)('pg') as { Pool: new (options: object) => Pool };
  pool = new Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/test', max: 2 });
});
afterAll(async () => {
  await pool?.end();
  await shutdown();
});

async function listOrders(users: number): Promise<void> {
  const { rows } = await pool.query('SELECT g AS id FROM generate_series(1, $1::int) AS g', [users]);
  for (const row of rows as { id: number }[]) await pool.query('SELECT $1::int AS user_id, md5($1::text) AS total', [row.id]);
}

describe('measureCost', () => {
  it('returns the exact cost of the work inside it, with every statement', async () => {
    const cost = await measureCost(() => listOrders(4));
    expect(cost).toMatchObject({
      queries: 5,
      rows: 8,
      repeatedCount: 4,
      repeatedStatement: 'SELECT $1::int AS user_id, md5($1::text) AS total',
      httpClientCalls: 0,
    });
    expect(cost.statements).toEqual([
      { fingerprint: 'SELECT $1::int AS user_id, md5($1::text) AS total', count: 4 },
      { fingerprint: 'SELECT g AS id FROM generate_series(?, $1::int) AS g', count: 1 },
    ]);
  });

  it('passes within budget, and fails with the violations and statements listed', async () => {
    const cost = await measureCost(() => listOrders(3));
    expect(cost).toBeWithinBudget({ queries: 4, repeatedQueries: 3 });
    expect(() => expect(cost).toBeWithinBudget({ queries: 2, repeatedQueries: 1 })).toThrow(
      [
        'cost exceeded the budget {"queries":2,"repeatedQueries":1}:',
        '  db.queries 4>2',
        '  db.repeated_count 3>1',
        'statements (4 queries):',
        '  3× SELECT $1::int AS user_id, md5($1::text) AS total',
        '  1× SELECT g AS id FROM generate_series(?, $1::int) AS g',
      ].join('\n'),
    );
  });

  it('rethrows the error of the measured code', async () => {
    await expect(measureCost(() => pool.query('SELECT * FROM no_such_table'))).rejects.toThrow('relation "no_such_table" does not exist');
  });

  it('measures a job run with withBudget as the job’s own cost, not the measurement’s', async () => {
    const cost = await measureCost(async () => {
      await pool.query('SELECT 1 AS before_job');
      await withBudget('email.send', () => listOrders(2));
    });
    expect(cost.queries).toBe(1);
  });
});
