/**
 * `node bench/route-cost.mjs` (after `npm run build`): CPU per request of the demo's 3-query
 * route (express 5 + a pg Pool of 2) as instrumentation layers are added one by one. Each
 * configuration runs in its own app process (route-cost-app.cjs), which reports its own
 * process.cpuUsage(); requests go over keep-alive HTTP at a fixed concurrency. All the
 * configurations' processes are up at once and take turns in short bursts (order rotated each
 * cycle), so load from elsewhere on a shared machine falls on all of them alike; each burst is
 * compared with the burst of its reference configuration in the same cycle (paired medians).
 * A layer costing a few µs is below this table's noise (process-to-process and load-dependent
 * differences are tens of µs): bench/route-cost-micro.cjs measures those in isolation.
 *
 * Env: DATABASE_URL (postgres://postgres@127.0.0.1:5432/test), ROUTE_COST_ROUNDS of fresh
 * processes (3), ROUTE_COST_CYCLES per round (15), ROUTE_COST_BURST requests (1000),
 * ROUTE_COST_WARMUP requests per process (3000), ROUTE_COST_CONCURRENCY (8), ROUTE_COST_STEPS
 * (comma-separated names; all by default), ROUTE_COST_PATH (/users/7/orders; /users/7 is the same
 * routing without a query).
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import { selectConfigurations } from './harness.mjs';
import { median } from './paired-ratios.mjs';

const require = createRequire(import.meta.url);
const env = process.env;
const DATABASE_URL = env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const ROUNDS = Number(env.ROUTE_COST_ROUNDS ?? 3);
const CYCLES = Number(env.ROUTE_COST_CYCLES ?? 15);
const BURST = Number(env.ROUTE_COST_BURST ?? 1000);
const WARMUP = Number(env.ROUTE_COST_WARMUP ?? 3000);
const CONCURRENCY = Number(env.ROUTE_COST_CONCURRENCY ?? 8);
// The 3-query route by default; /users/7 is the same routing with no query (express alone).
const PATH = env.ROUTE_COST_PATH ?? '/users/7/orders';

/** The layers request-budget puts over the route, one added at a time (`vs`: the step it adds to). */
const STEPS = {
  none: { layers: [], vs: undefined },
  http: { layers: ['http'], vs: 'none' },
  'http+express': { layers: ['http', 'express'], vs: 'http' },
  'http+express+pool-all': { layers: ['http', 'express', 'pool-all'], vs: 'http+express' },
  'http+pg': { layers: ['http', 'pg'], vs: 'http' },
  'http+pg+express': { layers: ['http', 'pg', 'express'], vs: 'http+pg' },
  'http+pg+express+pool': { layers: ['http', 'pg', 'express', 'pool'], vs: 'http+pg+express' },
  'http+pg+route+pool': { layers: ['http', 'pg', 'express-route', 'pool'], vs: 'http+pg' },
};

/** The middle half of the values, as `low–high`. */
function quartiles(values, digits = 1) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return `${at(0.25).toFixed(digits)}–${at(0.75).toFixed(digits)}`;
}

const log = (message) => process.stdout.write(`${message}\n`);

async function main() {
  await seed();
  log(
    `route-cost: ${PATH}, ${ROUNDS} rounds (fresh processes) × ${CYCLES} cycles × bursts of ${BURST} requests (+${WARMUP} warm-up per process) at concurrency ${CONCURRENCY}; ${os.cpus().length} cores, Node ${process.version}`,
  );
  await runSteps(Object.keys(selectConfigurations(STEPS, env.ROUTE_COST_STEPS)));
}

async function runSteps(names) {
  /** bursts[name] = µs per request of each burst; cycle i of every configuration ran back to back. */
  const bursts = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 0; round < ROUNDS; round += 1) {
    // Every configuration's process is up at once and they take turns in short bursts, so load
    // from elsewhere on the (shared) machine falls on all of them alike.
    const apps = await Promise.all(names.map((name) => startApp(STEPS[name].layers)));
    try {
      for (const app of apps) await load(app.port, app.agent, WARMUP);
      for (let cycle = 0; cycle < CYCLES; cycle += 1) {
        for (const index of names.map((_, i) => (i + cycle) % names.length)) bursts[names[index]].push(await burst(apps[index], apps[index].port));
      }
    } finally {
      await Promise.all(apps.map((app) => app.stop()));
    }
    log(`steps, round ${round + 1}/${ROUNDS}: ${names.map((name) => `${name} ${median(bursts[name].slice(-CYCLES)).toFixed(1)}`).join(', ')} µs CPU/request`);
  }
  log('\n| step | µs CPU/request (median of bursts) | middle half | vs | Δ µs (median of paired bursts) | ratio |');
  log('|---|---:|---:|---|---:|---:|');
  for (const name of names) {
    const { vs } = STEPS[name];
    const paired = vs !== undefined && bursts[vs] !== undefined;
    const delta = paired ? median(bursts[name].map((value, i) => value - bursts[vs][i])).toFixed(1) : '';
    const ratio = paired ? median(bursts[name].map((value, i) => value / bursts[vs][i])).toFixed(3) : '';
    log(`| ${name} | ${median(bursts[name]).toFixed(1)} | ${quartiles(bursts[name], 0)} | ${paired ? vs : ''} | ${delta} | ${ratio} |`);
  }
  log('');
}

/** Tables of its own (the demo's seed drops and recreates the demo's, which others may be using). */
async function seed() {
  const { Pool } = require('pg');
  const pool = new Pool({ connectionString: DATABASE_URL, max: 1 });
  try {
    await pool.query('CREATE TABLE IF NOT EXISTS rb_route_bench_users (id integer PRIMARY KEY, name text NOT NULL)');
    await pool.query('CREATE TABLE IF NOT EXISTS rb_route_bench_orders (id integer PRIMARY KEY, user_id integer NOT NULL, total_cents integer NOT NULL)');
    await pool.query('CREATE INDEX IF NOT EXISTS rb_route_bench_orders_user ON rb_route_bench_orders (user_id)');
    await pool.query("INSERT INTO rb_route_bench_users SELECT i, 'user ' || i FROM generate_series(1, 50) i ON CONFLICT DO NOTHING");
    await pool.query('INSERT INTO rb_route_bench_orders SELECT i, 1 + i % 50, i * 7 % 10000 FROM generate_series(1, 5000) i ON CONFLICT DO NOTHING');
  } finally {
    await pool.end();
  }
}

/** One app process with these layers, listening, with its own keep-alive agent. */
async function startApp(layers) {
  const child = fork(new URL('./route-cost-app.cjs', import.meta.url).pathname, [], {
    env: { ...env, DATABASE_URL, BENCH_LAYERS: layers.join(',') },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const [{ port }] = await once(child, 'message');
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  return {
    child,
    port,
    agent,
    stop: async () => {
      agent.destroy();
      child.send('stop');
      await once(child, 'exit');
    },
  };
}

/** µs of the app's CPU per request over one burst of BURST requests to `port`. */
async function burst(app, port) {
  const before = await cpu(app.child);
  await load(port, app.agent, BURST);
  return ((await cpu(app.child)) - before) / BURST;
}

async function cpu(child) {
  child.send('cpu');
  const [message] = await once(child, 'message');
  return message.cpu;
}

/** `count` requests, CONCURRENCY at a time; every answer must be 200. */
async function load(port, agent, count) {
  let sent = 0;
  const worker = async () => {
    while (sent < count) {
      sent += 1;
      const status = await get(port, agent);
      if (status !== 200) throw new Error(`GET ${PATH} answered ${status}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

function get(port, agent) {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: PATH, agent }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode));
    });
    request.on('error', reject);
  });
}

main().catch((error) => {
  process.stderr.write(`route-cost failed: ${error.stack ?? error}\n`);
  process.exit(1);
});
