'use strict';
// request-budget demo app: an express + pg service whose routes each have a
// known, deliberate cost, so the per-request summary can be checked by eye.
//
//   DATABASE_URL=postgres://... node --require @request-budget/node/register examples/demo/app.js
//
// Env: DATABASE_URL (required), PORT (default 0 = any free port), HOST
// (default 127.0.0.1), PG_POOL_MAX (default 10), UPSTREAM_URL (default: a tiny
// upstream server this process starts itself), SEED=1 (create the demo tables
// and rows before listening).

const http = require('node:http');
const express = require('express');
const { Pool } = require('pg');
const { seed } = require('./seed');

const REPORT_ROWS = 190_000; // ≈16 MB of JS objects on the V8 heap (measured on Node 24)

function intFromEnv(name, fallback) {
  const value = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isInteger(value) && value >= 0 ? value : fallback;
}

/** Express route handlers; each comment states the route's intended cost. */
function createApp(pool, upstreamUrl) {
  const app = express();

  // 0 queries.
  app.get('/health', (req, res) => {
    res.json({ ok: true });
  });

  // 1 query.
  app.get('/users/:id', async (req, res) => {
    const id = parseId(req.params.id);
    if (id === undefined) return res.status(400).json({ error: 'id must be a positive integer' });
    const { rows } = await pool.query('SELECT id, name, email FROM demo_users WHERE id = $1', [id]);
    if (rows.length === 0) return res.status(404).json({ error: 'no such user' });
    res.json(rows[0]);
  });

  // 3 queries: the user, their latest orders, and how many orders they have in total.
  app.get('/users/:id/orders', async (req, res) => {
    const id = parseId(req.params.id);
    if (id === undefined) return res.status(400).json({ error: 'id must be a positive integer' });
    const user = await pool.query('SELECT id, name FROM demo_users WHERE id = $1', [id]);
    if (user.rows.length === 0) return res.status(404).json({ error: 'no such user' });
    const orders = await pool.query(
      'SELECT id, total_cents, created_at FROM demo_orders WHERE user_id = $1 ORDER BY id DESC LIMIT 10',
      [id],
    );
    const count = await pool.query('SELECT count(*)::int AS n FROM demo_orders WHERE user_id = $1', [id]);
    res.json({ user: user.rows[0], orders: orders.rows, orderCount: count.rows[0].n });
  });

  // N+1, on purpose: 1 query for the users, then 1 identical statement per user
  // (21 queries, ~2,000 rows). A single JOIN or `WHERE user_id = ANY($1)` would do.
  app.get('/users-with-orders', async (req, res) => {
    const users = await pool.query('SELECT id FROM demo_users ORDER BY id LIMIT 20');
    const result = [];
    for (const { id } of users.rows) {
      const orders = await pool.query('SELECT * FROM demo_orders WHERE user_id = $1', [id]);
      result.push({ id, orderCount: orders.rows.length });
    }
    res.json({ users: result });
  });

  // The large-rows mistake: 1 query that pulls all 5,000 rows to count them in JS.
  app.get('/orders/count-slow', async (req, res) => {
    const { rows } = await pool.query('SELECT * FROM demo_orders');
    res.json({ count: rows.length });
  });

  // The fix: 1 query, 1 row.
  app.get('/orders/count', async (req, res) => {
    const { rows } = await pool.query('SELECT count(*)::int AS count FROM demo_orders');
    res.json({ count: rows[0].count });
  });

  // Memory-hungry, 0 queries: plain JS objects holding doubles live on the V8
  // heap (Buffers and typed arrays would not show up in heapUsed).
  app.get('/report', (req, res) => {
    const rows = new Array(REPORT_ROWS);
    for (let i = 0; i < REPORT_ROWS; i++) {
      rows[i] = { id: i, price: i * 0.5 + 0.25, weight: Math.sqrt(i + 1) };
    }
    let total = 0;
    for (const row of rows) total += row.price;
    res.json({ rows: rows.length, totalPrice: total, meanPrice: total / rows.length });
  });

  // 1 outgoing call with no timeout: if the upstream hangs, so does this request.
  app.get('/proxy', async (req, res) => {
    const upstream = await fetch(upstreamUrl);
    res.json({ upstreamStatus: upstream.status, upstream: await upstream.json() });
  });

  // The same call, bounded: aborts after 1 s.
  app.get('/proxy-with-timeout', async (req, res) => {
    const upstream = await fetch(upstreamUrl, { signal: AbortSignal.timeout(1000) });
    res.json({ upstreamStatus: upstream.status, upstream: await upstream.json() });
  });

  // Express 5 forwards rejected promises here. stderr stays for request-budget's
  // own output, so keep this to one line.
  app.use((err, req, res, next) => {
    console.error(`demo app: ${req.method} ${req.originalUrl} failed: ${err.message}`);
    if (res.headersSent) return next(err);
    const timedOut = err.name === 'TimeoutError';
    res.status(timedOut ? 504 : 500).json({ error: timedOut ? 'upstream timed out' : 'internal error' });
  });

  return app;
}

function parseId(raw) {
  return /^[1-9]\d{0,8}$/.test(raw) ? Number(raw) : undefined;
}

/** Stands in for a remote service: answers every request after ~5 ms. */
function startUpstream() {
  const server = http.createServer((req, res) => {
    setTimeout(() => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ source: 'demo-upstream', eurUsd: 1.08 }));
    }, 5);
  });
  return listen(server, 0, '127.0.0.1');
}

function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

async function main() {
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    console.error('demo app: DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)');
    process.exitCode = 1;
    return;
  }

  const pool = new Pool({ connectionString: databaseUrl, max: intFromEnv('PG_POOL_MAX', 10) });
  // An idle client losing its connection must not crash the process.
  pool.on('error', (err) => console.error(`demo app: idle database client error: ${err.message}`));

  if (process.env.SEED === '1') await seed(pool);

  let upstream;
  let upstreamUrl = process.env.UPSTREAM_URL;
  if (!upstreamUrl) {
    upstream = await startUpstream();
    upstreamUrl = `http://127.0.0.1:${upstream.address().port}/rates`;
  }

  const host = process.env.HOST || '127.0.0.1';
  const server = await listen(http.createServer(createApp(pool, upstreamUrl)), intFromEnv('PORT', 0), host);
  // run-demo.mjs waits for exactly this line on stdout.
  console.log(`demo app listening on http://${host}:${server.address().port}`);

  const shutdown = async (signal) => {
    console.log(`demo app: ${signal} received, shutting down`);
    // Never hang on a stuck connection; unref'd so it does not keep us alive.
    setTimeout(() => {
      console.error('demo app: shutdown took over 10 s, exiting');
      process.exit(1);
    }, 10_000).unref();
    // close() stops accepting and drops idle keep-alive sockets; in-flight requests finish.
    await new Promise((resolve) => server.close(resolve));
    if (upstream) await new Promise((resolve) => upstream.close(resolve));
    await pool.end();
    // No process.exit(): the process ends once the event loop is empty, which
    // leaves time for anything else listening for the signal (e.g. a telemetry flush).
    console.log('demo app stopped');
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main().catch((err) => {
  console.error(`demo app: failed to start: ${err.stack || err}`);
  process.exit(1);
});
