// Cost assertions with node:test: assertCost measures and asserts in one call.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assertCost } from '@request-budget/node/testing';
import { sample, serveSample } from './sample-server.mjs';

const service = serveSample();

describe('budgets', () => {
  test('GET /users-with-orders stays at 2 queries', async () => {
    const cost = await assertCost(() => fetch(`${service.base}/users-with-orders`).then((response) => response.json()), { queries: 2, repeatedQueries: 1 });
    assert.deepEqual(
      cost.requests.map((request) => [request.route, request.queries, request.rows]),
      [['GET /users-with-orders', 2, 60]],
    );
  });

  test('orderTotal runs one query', async () => {
    await assertCost(() => sample.orderTotal(service.pool, 3), { queries: 1 }, { name: 'orderTotal' });
  });
});
