// The sample service, served on an ephemeral port in the test process.
import http from 'node:http';
import { createRequire } from 'node:module';
import { after, before } from 'node:test';

// Required in the test process after --import @request-budget/node/node-test has started it.
export const sample = createRequire(import.meta.url)('../../fixtures/ci-gate/app.js');

/** Serves the app for the test file. */
export function serveSample() {
  const service = { pool: undefined, app: undefined, server: undefined, base: '' };
  before(async () => {
    service.pool = sample.createPool({ max: 4 });
    service.app = sample.createApp(service.pool);
    service.server = http.createServer(service.app);
    await new Promise((resolve) => service.server.listen(0, '127.0.0.1', resolve));
    service.base = `http://127.0.0.1:${service.server.address().port}`;
  });
  after(async () => {
    await new Promise((resolve) => service.server.close(resolve));
    await service.pool.end();
  });
  return service;
}
