import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { concurrently, get } from '../support/http';

let server: http.Server;
let base: string;
let inFlight = 0;
let maxInFlight = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/ok') return res.end('fine');
    if (req.url === '/hang') return; // never answers
    if (req.url === '/wait') {
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      return setTimeout(() => {
        inFlight -= 1;
        res.end('waited');
      }, 100);
    }
    res.statusCode = 404;
    res.end('nope');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('get', () => {
  it('returns status and body, including for error statuses', async () => {
    expect(await get(`${base}/ok`)).toMatchObject({ status: 200, body: 'fine' });
    expect(await get(`${base}/missing`)).toMatchObject({ status: 404, body: 'nope' });
  });

  it('rejects with the URL when the server does not answer in time', async () => {
    await expect(get(`${base}/hang`, { timeoutMs: 150 })).rejects.toThrow(`GET ${base}/hang failed: timed out after 150 ms`);
  });

  it('rejects with the cause when nothing listens', async () => {
    // A port that was just free (fetch refuses well-known "bad ports" such as 1).
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    await expect(get(`http://127.0.0.1:${port}/`, { timeoutMs: 1000 })).rejects.toThrow(/failed: ECONNREFUSED/);
  });
});

describe('concurrently', () => {
  it('runs all calls at once and keeps results in index order', async () => {
    maxInFlight = 0;
    const results = await concurrently(5, async (i) => `${i}:${(await get(`${base}/wait`)).body}`);
    expect(results).toEqual(['0:waited', '1:waited', '2:waited', '3:waited', '4:waited']);
    expect(maxInFlight).toBe(5);
  });

  it('waits for every call, then throws the failure (or an AggregateError for several)', async () => {
    let finished = 0;
    const slowOk = () => new Promise<void>((resolve) => setTimeout(() => (finished++, resolve()), 50));
    await expect(concurrently(3, (i) => (i === 1 ? Promise.reject(new Error('one failed')) : slowOk()))).rejects.toThrow('one failed');
    expect(finished).toBe(2);

    const all = concurrently(3, (i) => Promise.reject(new Error(`failed ${i}`)));
    await expect(all).rejects.toBeInstanceOf(AggregateError);
    await expect(all).rejects.toThrow('3 of 3 concurrent calls failed');
  });
});
