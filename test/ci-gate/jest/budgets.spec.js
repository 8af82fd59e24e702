// Cost assertions under jest: a route measured through supertest, and a function called
// directly. toBeWithinBudget comes with the preset.
const request = require('supertest');
const { measureCost } = require('@request-budget/node/testing');
const { sample, serveSample } = require('./sample-server.js');

const service = serveSample();

describe('budgets', () => {
  test('GET /users-with-orders stays at 2 queries, whatever the number of users', async () => {
    const cost = await measureCost(() => request(service.app).get('/users-with-orders').expect(200));
    expect(cost).toBeWithinBudget({ queries: 2, repeatedQueries: 1 });
    expect(cost.requests.map((r) => [r.route, r.status, r.queries, r.rows])).toEqual([['GET /users-with-orders', 200, 2, 60]]);
  });

  test('orderTotal runs one query', async () => {
    const cost = await measureCost(() => sample.orderTotal(service.pool, 3), { name: 'orderTotal' });
    expect(cost).toMatchObject({ queries: 1, rows: 1, requests: [] });
  });
});
