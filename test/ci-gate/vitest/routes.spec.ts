// Functional tests over HTTP (fetch, http.get, supertest), with no cost assertion at all: the
// per-route baseline gate watches what each route costs in each of them.
import http from 'node:http';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { serveSample } from './sample-server';

const service = serveSample();

describe('GET /users-with-orders', () => {
  it('lists every user with their orders', async () => {
    const response = await fetch(`${service.base()}/users-with-orders`);
    expect(response.status).toBe(200);
    const users = (await response.json()) as { id: number; orders: unknown[] }[];
    expect(users).toHaveLength(20);
    expect(users[0]).toEqual({
      id: 1,
      name: 'user 1',
      orders: [
        { id: 1, total: 11 },
        { id: 2, total: 12 },
      ],
    });
  });
});

describe('GET /users/:id', () => {
  it('returns the user and their number of orders', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get(`${service.base()}/users/7`, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    expect(JSON.parse(body)).toEqual({ id: 7, name: 'user 7', orders: 2 });
  });

  it('answers 404 for an unknown user (supertest)', async () => {
    await request(service.app()).get('/users/999').expect(404);
  });
});
