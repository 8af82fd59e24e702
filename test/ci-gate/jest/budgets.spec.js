// Cost assertions under jest: toBeWithinBudget comes with the preset.
const { measureCost } = require('@request-budget/node/testing');
const { sample, serveSample } = require('./sample-server.js');

const service = serveSample();

describe('budgets', () => {
  test('GET /users-with-orders stays at 2 queries, whatever the number of users', async () => {
    const cost = await measureCost(() => fetch(`${service.base}/users-with-orders`).then((response) => response.json()));
    expect(cost).toBeWithinBudget({ queries: 2, repeatedQueries: 1 });
    expect(cost.requests.map((request) => [request.route, request.status, request.queries, request.rows])).toEqual([['GET /users-with-orders', 200, 2, 60]]);
  });

  test('orderTotal runs one query', async () => {
    const cost = await measureCost(() => sample.orderTotal(service.pool, 3), { name: 'orderTotal' });
    expect(cost).toMatchObject({ queries: 1, rows: 1, requests: [] });
  });
});
