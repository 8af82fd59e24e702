// Cost assertions: a route measured over HTTP and a function called directly.
import { describe, expect, it } from 'vitest';
import { measureCost, type BudgetMatchers } from '@request-budget/node/testing';
import { sample, serveSample } from './sample-server';

declare module 'vitest' {
  interface Matchers<R extends void | Promise<void> = void | Promise<void>, T = unknown> extends BudgetMatchers<R> {}
}

const service = serveSample();

describe('budgets', () => {
  it('GET /users-with-orders stays at 2 queries, whatever the number of users', async () => {
    const cost = await measureCost(() => fetch(`${service.base()}/users-with-orders`).then((response) => response.json()));
    expect(cost).toBeWithinBudget({ queries: 2, repeatedQueries: 1 });
    expect(cost.requests.map((request) => [request.route, request.status, request.queries, request.rows])).toEqual([['GET /users-with-orders', 200, 2, 60]]);
  });

  it('orderTotal runs one query', async () => {
    const cost = await measureCost(() => sample.orderTotal(service.pool(), 3), { name: 'orderTotal' });
    expect(cost).toMatchObject({ queries: 1, rows: 1, requests: [] });
  });
});
