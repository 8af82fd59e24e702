// The sample service, served on an ephemeral port in the test file's sandbox (supertest serves
// the app object on a port of its own for each request).
const http = require('node:http');

// Required from the test file, after the preset's setup has started request-budget.
const sample = require('../../fixtures/ci-gate/app.js');

/** Serves the app for the test file. */
function serveSample() {
  const service = { pool: undefined, app: undefined, server: undefined, base: '' };
  beforeAll(async () => {
    service.pool = sample.createPool({ max: 4 });
    service.app = sample.createApp(service.pool);
    service.server = http.createServer(service.app);
    await new Promise((resolve) => service.server.listen(0, '127.0.0.1', resolve));
    service.base = `http://127.0.0.1:${service.server.address().port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => service.server.close(resolve));
    await service.pool.end();
  });
  return service;
}

module.exports = { sample, serveSample };
