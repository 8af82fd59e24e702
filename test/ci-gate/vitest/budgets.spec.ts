// Cost assertions: a route measured through supertest, and a function called directly.
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { measureCost, type BudgetMatchers } from '@request-budget/node/testing';
import { sample, serveSample } from './sample-server';

declare module 'vitest' {
  interface Matchers<R extends void | Promise<void> = void | Promise<void>, T = unknown> extends BudgetMatchers<R> {}
}

const service = serveSample();

describe('budgets', () => {
  it('GET /users-with-orders stays at 2 queries, whatever the number of users', async () => {
    const cost = await measureCost(() => request(service.app()).get('/users-with-orders').expect(200));
    expect(cost).toBeWithinBudget({ queries: 2, repeatedQueries: 1 });
    expect(cost.requests.map((r) => [r.route, r.status, r.queries, r.rows])).toEqual([['GET /users-with-orders', 200, 2, 60]]);
  });

  it('orderTotal runs one query', async () => {
    const cost = await measureCost(() => sample.orderTotal(service.pool(), 3), { name: 'orderTotal' });
    expect(cost).toMatchObject({ queries: 1, rows: 1, requests: [] });
  });
});
