'use strict';
/**
 * `node bench/route-cost-micro.cjs` (after `npm run build`): what the express route naming and the
 * pool binding cost per request, in µs of CPU, without sockets or a database, so that the
 * figures hold on a busy machine (bench/route-cost.mjs measures the whole route over HTTP; there
 * the CPU per request moves with the machine's load by more than these layers cost).
 *
 * Each variant runs in processes of its own (a layer in the same process would change the shapes
 * the other side's code sees), several rounds with the variants' order rotated; each process
 * reports the median of its bursts after a warm-up; the table gives medians over rounds and the
 * median of the per-round differences from the variant without the layer.
 *
 * Express: instrumentation-http on a real SDK (no span processor), requests handed to
 * http.Server's 'request' event with a socket that discards what is written, each response
 * awaited to its end. Shapes: the demo's (one route), a mounted router with parameters
 * (`/api/:v` + `/users/:id`), and the same behind five middlewares (as apps have: body parser,
 * cors, logging...).
 *
 * Pool: pg-pool's connect() + release() with a client that connects at once, in a request's span
 * context; the demo's 3-query route makes three such calls per request (pool.query does).
 *
 * Env: MICRO_ROUNDS (7), MICRO_BURSTS per process (9), MICRO_REQUESTS per burst (3000),
 * MICRO_GROUP (express | pool; both by default).
 */
const ROUNDS = Number(process.env.MICRO_ROUNDS ?? 7);
const BURSTS = Number(process.env.MICRO_BURSTS ?? 9);
const REQUESTS = Number(process.env.MICRO_REQUESTS ?? 3000);
const dist = '../packages/node/dist';
// V8 on one thread with fixed seeds: background compilation and GC threads, and hash seeds, would
// otherwise move a process's CPU per call by more than the layers measured here.
const FLAGS = (process.env.MICRO_NODE_FLAGS ?? '--predictable --hash-seed=1 --random-seed=1').split(' ').filter(Boolean);

/** Variant: what the process installs; `vs`: the variant it is compared with. */
const VARIANTS = {
  'http only': { group: 'express', vs: undefined },
  'instrumentation-express, layer spans off': { group: 'express', vs: 'http only' },
  'request-budget route naming': { group: 'express', vs: 'http only' },
  'instrumentation-express, layer spans on': { group: 'express', vs: 'http only' },
  'no pool binding': { group: 'pool', vs: undefined },
  'pool binding, every caller (no instrumentation-pg)': { group: 'pool', vs: 'no pool binding' },
  'pool binding, beside instrumentation-pg (callers without a span)': { group: 'pool', vs: 'no pool binding' },
};

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** CPU µs per call of `once`, over `count` calls awaited one after the other. */
async function cpuPerCall(count, once) {
  const before = process.cpuUsage();
  for (let i = 0; i < count; i += 1) await once(i);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / count;
}

/** Median µs per call over BURSTS bursts, after two bursts of warm-up. */
async function measure(once) {
  for (let i = 0; i < 2; i += 1) await cpuPerCall(REQUESTS, once);
  const bursts = [];
  for (let i = 0; i < BURSTS; i += 1) bursts.push(await cpuPerCall(REQUESTS, once));
  return median(bursts);
}

// ---- one variant, in this process ---------------------------------------------------------

async function runExpress(variant) {
  const { context } = require('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
  const { TracerProvider } = require('@opentelemetry/sdk-trace');
  const { registerInstrumentations } = require('@opentelemetry/instrumentation');
  const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
  const { ExpressInstrumentation, ExpressLayerType } = require('@opentelemetry/instrumentation-express');
  const { applyFrameworkRoute } = require(`${dist}/route-naming`);
  const { ExpressRouteInstrumentation } = require(`${dist}/express-route-instrumentation`);
  const { Duplex } = require('node:stream');

  const instrumentations = [new HttpInstrumentation({ applyCustomAttributesOnSpan: applyFrameworkRoute })];
  if (variant === 'instrumentation-express, layer spans off') {
    instrumentations.push(
      new ExpressInstrumentation({ ignoreLayersType: [ExpressLayerType.MIDDLEWARE, ExpressLayerType.ROUTER, ExpressLayerType.REQUEST_HANDLER] }),
    );
  } else if (variant === 'instrumentation-express, layer spans on') {
    instrumentations.push(new ExpressInstrumentation());
  } else if (variant === 'request-budget route naming') {
    instrumentations.push(new ExpressRouteInstrumentation());
  }
  // Keeps the name of the last server span, to show what each variant names the request.
  let lastName;
  const provider = new TracerProvider({
    spanProcessors: [{ onStart() {}, onEnd: (span) => span.kind === 1 && (lastName = span.name), forceFlush: async () => {}, shutdown: async () => {} }],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  registerInstrumentations({ instrumentations, tracerProvider: provider });
  const http = require('node:http');
  const express = require('express');

  const answer = (req, res) => res.json({ id: req.params.id });
  const mounted = (app) => {
    const users = express.Router();
    users.get('/:id', answer);
    const api = express.Router();
    api.use('/users', users);
    app.use('/api/:v', api);
  };
  const shapes = {
    'one route (demo)': { path: '/users/7/orders', build: (app) => app.get('/users/:id/orders', answer) },
    'mounted router': { path: '/api/v2/users/7', build: mounted },
    'five middlewares + mounted router': {
      path: '/api/v2/users/7',
      build: (app) => {
        for (let i = 0; i < 5; i += 1) app.use((req, res, next) => next());
        mounted(app);
      },
    },
  };
  const server = http.createServer();
  const requests = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const app = express();
    shape.build(app);
    app.use((err, req, res, next) => res.status(500).end());
    requests[name] = () =>
      new Promise((resolve) => {
        const socket = new Duplex({ read() {}, write: (_chunk, _encoding, callback) => callback() });
        const req = new http.IncomingMessage(socket);
        req.method = 'GET';
        req.url = shape.path;
        req.headers = { host: 'localhost' };
        const res = new http.ServerResponse(req);
        res.assignSocket(socket);
        res.on('finish', () => {
          res.detachSocket(socket);
          // What http.Server does after 'finish' (instrumentation-http ends the span on it).
          res.emit('close');
          resolve();
        });
        server.removeAllListeners('request');
        server.on('request', app);
        server.emit('request', req, res);
      });
  }
  // Every shape warmed up before any is measured, then the shapes' bursts interleaved, so that
  // each is measured on the same JIT state.
  const results = {};
  for (const [name, request] of Object.entries(requests)) {
    await request();
    results[name] = { bursts: [], named: lastName };
    for (let i = 0; i < 2; i += 1) await cpuPerCall(REQUESTS, request);
  }
  for (let i = 0; i < BURSTS; i += 1) {
    for (const [name, request] of Object.entries(requests)) results[name].bursts.push(await cpuPerCall(REQUESTS, request));
  }
  for (const result of Object.values(results)) result.micros = median(result.bursts);
  return results;
}

async function runPool(variant) {
  const { context, trace } = require('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
  const { TracerProvider } = require('@opentelemetry/sdk-trace');
  const { registerInstrumentations } = require('@opentelemetry/instrumentation');
  const { PoolContextInstrumentation } = require(`${dist}/pool-context-instrumentation`);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  if (variant !== 'no pool binding') {
    const pgBindsCallersWithSpan = variant.includes('beside instrumentation-pg');
    registerInstrumentations({ instrumentations: [new PoolContextInstrumentation({ pgBindsCallersWithSpan })] });
  }
  const Pool = require('pg-pool');
  // A client that connects at once: connect() + release() is then all pool bookkeeping.
  class Client extends require('node:events').EventEmitter {
    connect(callback) {
      callback();
    }
    end() {}
  }
  const span = new TracerProvider().getTracer('micro').startSpan('GET /users/:id/orders');
  const inRequest = trace.setSpan(context.active(), span);
  const pool = new Pool({ Client, max: 2 });
  const connectRelease = () =>
    context.with(
      inRequest,
      () =>
        new Promise((resolve, reject) => {
          pool.connect((error, client, release) => {
            if (error) return reject(error);
            release();
            resolve();
          });
        }),
    );
  return { 'connect() + release()': { micros: await measure(connectRelease) } };
}

// ---- the parent: processes per variant, rounds, table -------------------------------------

async function main() {
  const { execFileSync } = require('node:child_process');
  const log = (message) => process.stdout.write(`${message}\n`);
  log(`route-cost-micro: ${ROUNDS} rounds × one process per variant × ${BURSTS} bursts of ${REQUESTS} calls (+2 warm-up), Node ${process.version}`);
  const names = Object.keys(VARIANTS).filter((name) => process.env.MICRO_GROUP === undefined || VARIANTS[name].group === process.env.MICRO_GROUP);
  /** runs[variant][round] = { shape: { micros, named } } */
  const runs = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const index of names.map((_, i) => (i + round) % names.length)) {
      const name = names[index];
      const out = execFileSync(process.execPath, [...FLAGS, __filename], {
        env: { ...process.env, MICRO_VARIANT: name },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      runs[name][round] = JSON.parse(out);
    }
    log(`round ${round + 1}/${ROUNDS} done`);
  }
  log('\n| variant | shape | server span | µs CPU/call (median over rounds) | vs | Δ µs/call (median of per-round Δ) | Δ range |');
  log('|---|---|---|---:|---|---:|---:|');
  for (const name of names) {
    const { vs } = VARIANTS[name];
    for (const shape of Object.keys(runs[name][0])) {
      const values = runs[name].map((run) => run[shape].micros);
      const deltas = vs !== undefined ? runs[name].map((run, round) => run[shape].micros - runs[vs][round][shape].micros) : [];
      const named = runs[name][0][shape].named;
      log(
        `| ${name} | ${shape} | ${named !== undefined ? `\`${named}\`` : ''} | ${median(values).toFixed(2)} | ${vs ?? ''} | ${vs !== undefined ? median(deltas).toFixed(2) : ''} | ${
          vs !== undefined ? `${Math.min(...deltas).toFixed(2)} – ${Math.max(...deltas).toFixed(2)}` : ''
        } |`,
      );
    }
  }
}

const variant = process.env.MICRO_VARIANT;
if (variant === undefined) {
  main().catch((error) => {
    process.stderr.write(`route-cost-micro failed: ${error.stack ?? error}\n`);
    process.exit(1);
  });
} else {
  (VARIANTS[variant].group === 'express' ? runExpress(variant) : runPool(variant)).then(
    // Exits at once: an idle pool client's timer would hold the process for seconds.
    (results) => process.stdout.write(JSON.stringify(results), () => process.exit(0)),
    (error) => {
      process.stderr.write(`${error.stack ?? error}\n`);
      process.exit(1);
    },
  );
}
