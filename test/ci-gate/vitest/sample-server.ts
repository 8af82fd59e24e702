// The sample service, served on an ephemeral port in the test process, as teams test routes
// (supertest serves the app object on a port of its own for each request).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { afterAll, beforeAll } from 'vitest';

export type Pool = { query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>; end(): Promise<void> };
type Sample = {
  createApp(pool: Pool): http.RequestListener;
  createPool(options?: { max?: number }): Pool;
  orderTotal(pool: Pool, userId: number): Promise<number>;
};

// Required (not imported) from the test file's body: after request-budget's setup file.
export const sample = createRequire(import.meta.url)('../../fixtures/ci-gate/app.js') as Sample;

/** Serves the app for the test file; `base()` is its URL. */
export function serveSample(): { base: () => string; pool: () => Pool; app: () => http.RequestListener } {
  let server: http.Server | undefined;
  let pool: Pool | undefined;
  let app: http.RequestListener | undefined;
  beforeAll(async () => {
    pool = sample.createPool({ max: 4 });
    app = sample.createApp(pool);
    server = http.createServer(app);
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await pool?.end();
  });
  return {
    base: () => `http://127.0.0.1:${(server!.address() as AddressInfo).port}`,
    pool: () => pool!,
    app: () => app!,
  };
}
