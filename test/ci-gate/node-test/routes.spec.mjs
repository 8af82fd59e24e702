// Functional tests over HTTP, with no cost assertion: the per-route baseline gate watches them.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { serveSample } from './sample-server.mjs';

const service = serveSample();

describe('GET /users-with-orders', () => {
  test('lists every user with their orders', async () => {
    const response = await fetch(`${service.base}/users-with-orders`);
    assert.equal(response.status, 200);
    const users = await response.json();
    assert.equal(users.length, 20);
    assert.deepEqual(users[0], { id: 1, name: 'user 1', orders: [{ id: 1, total: 11 }, { id: 2, total: 12 }] });
  });
});

describe('GET /users/:id', () => {
  test('returns the user and their number of orders', async () => {
    const response = await fetch(`${service.base}/users/7`);
    assert.deepEqual(await response.json(), { id: 7, name: 'user 7', orders: 2 });
  });
});
