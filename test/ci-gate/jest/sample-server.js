// The sample service, served on an ephemeral port in the test file's sandbox.
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

/** What supertest does with an app object: serve it on an ephemeral port for one request. */
function requestApp(app, path) {
  const server = http.createServer(app);
  return new Promise((resolve, reject) => {
    server.listen(0, '127.0.0.1', () => {
      http
        .get({ host: '127.0.0.1', port: server.address().port, path }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (chunk) => (body += chunk));
          res.on('end', () => server.close(() => resolve({ status: res.statusCode, body })));
        })
        .on('error', reject);
    });
  });
}

module.exports = { sample, serveSample, requestApp };
