'use strict';
// The app measured by route-cost.mjs: the demo's 3-query route (express 5, a pg Pool of 2, so
// that requests queue for a connection) with the instrumentations BENCH_LAYERS names, each
// configured as request-budget configures it, on an SDK with no span processor (the processors
// cost the same in every configuration; bench/micro.mjs measures them).
//
// BENCH_LAYERS: comma-separated, any of
//   http            instrumentation-http, with request-budget's route fallback hook
//   pg              instrumentation-pg, with request-budget's row hook
//   express         instrumentation-express, layer spans off (ignoreLayersType), as request-budget had it
//   express-spans   instrumentation-express with its layer spans (REQUEST_BUDGET_EXPRESS_LAYER_SPANS)
//   express-route   request-budget's route-template instrumentation (express-route-instrumentation.ts)
//   pool            request-budget's pool-context binding, as configured beside instrumentation-pg
//   pool-all        the same binding, binding every caller (as when pg is not instrumented)
//
// The parent drives it over IPC: 'cpu' answers process.cpuUsage() in µs.
const { context, trace } = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { TracerProvider } = require('@opentelemetry/sdk-trace');
const { registerInstrumentations } = require('@opentelemetry/instrumentation');

const layers = new Set((process.env.BENCH_LAYERS ?? '').split(',').filter(Boolean));
const dist = '../packages/node/dist';

if (layers.size > 0) {
  const instrumentations = [];
  const { applyFrameworkRoute } = require(`${dist}/route-naming`);
  const { pgResponseHook } = require(`${dist}/instrumentations`);
  if (layers.has('http')) {
    const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
    instrumentations.push(new HttpInstrumentation({ applyCustomAttributesOnSpan: applyFrameworkRoute }));
  }
  if (layers.has('pg')) {
    const { PgInstrumentation } = require('@opentelemetry/instrumentation-pg');
    instrumentations.push(new PgInstrumentation({ responseHook: pgResponseHook }));
  }
  if (layers.has('express') || layers.has('express-spans')) {
    const { ExpressInstrumentation, ExpressLayerType } = require('@opentelemetry/instrumentation-express');
    const ignored = [ExpressLayerType.MIDDLEWARE, ExpressLayerType.ROUTER, ExpressLayerType.REQUEST_HANDLER];
    instrumentations.push(new ExpressInstrumentation(layers.has('express') ? { ignoreLayersType: ignored } : {}));
  }
  if (layers.has('express-route')) {
    const { ExpressRouteInstrumentation } = require(`${dist}/express-route-instrumentation`);
    instrumentations.push(new ExpressRouteInstrumentation());
  }
  if (layers.has('pool') || layers.has('pool-all')) {
    const { PoolContextInstrumentation } = require(`${dist}/pool-context-instrumentation`);
    instrumentations.push(new PoolContextInstrumentation({ pgBindsCallersWithSpan: layers.has('pool') }));
  }
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new TracerProvider());
  registerInstrumentations({ instrumentations });
}

const http = require('node:http');
const express = require('express');
const { Pool } = require('pg');

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 2 });

function createApp() {
  const app = express();
  // Routing alone: no query.
  app.get('/users/:id', (req, res) => res.json({ id: Number(req.params.id) }));
  // As examples/demo/app.js: 3 queries.
  app.get('/users/:id/orders', async (req, res) => {
    const id = Number(req.params.id);
    const user = await pool.query('SELECT id, name FROM rb_route_bench_users WHERE id = $1', [id]);
    const orders = await pool.query('SELECT id, total_cents FROM rb_route_bench_orders WHERE user_id = $1 ORDER BY id DESC LIMIT 10', [id]);
    const count = await pool.query('SELECT count(*)::int AS n FROM rb_route_bench_orders WHERE user_id = $1', [id]);
    res.json({ user: user.rows[0], orders: orders.rows, orderCount: count.rows[0].n });
  });
  app.use((err, _req, res, _next) => {
    res.status(500).json({ error: err.message });
  });
  return app;
}

const server = http.createServer(createApp());
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));

process.on('message', (message) => {
  if (message === 'cpu') {
    const { user, system } = process.cpuUsage();
    process.send({ cpu: user + system });
  } else if (message === 'stop') {
    server.close();
    server.closeAllConnections();
    pool.end().finally(() => process.exit(0));
  }
});
