// Functional tests over HTTP (fetch and supertest), with no cost assertion: the per-route
// baseline gate watches what each route costs in each of them.
const request = require('supertest');
const { serveSample } = require('./sample-server.js');

const service = serveSample();

describe('GET /users-with-orders', () => {
  test('lists every user with their orders', async () => {
    const response = await fetch(`${service.base}/users-with-orders`);
    expect(response.status).toBe(200);
    const users = await response.json();
    expect(users).toHaveLength(20);
    expect(users[0]).toEqual({ id: 1, name: 'user 1', orders: [{ id: 1, total: 11 }, { id: 2, total: 12 }] });
  });
});

describe('GET /users/:id', () => {
  test('returns the user and their number of orders', async () => {
    const response = await fetch(`${service.base}/users/7`);
    expect(await response.json()).toEqual({ id: 7, name: 'user 7', orders: 2 });
  });

  test('answers 404 for an unknown user (supertest)', async () => {
    await request(service.app).get('/users/999').expect(404);
  });
});
