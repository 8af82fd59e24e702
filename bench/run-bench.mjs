/**
 * `npm run bench`: overhead of request-budget against plain OpenTelemetry and against no
 * instrumentation, on the demo app with a real PostgreSQL. Configurations a/b/c/d (see
 * configurations.mjs) run interleaved, several rounds, on the 3-query and the 21-query route;
 * load comes from a second process; ratios are computed from medians of this same run.
 *
 * Env: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test), BENCH_ROUNDS (3),
 * BENCH_SECONDS per measurement (8), BENCH_WARMUP_SECONDS (2), BENCH_CONNECTIONS (8).
 * Writes bench/results/latest.{json,md,png}.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import readline from 'node:readline';
import { configurations } from './configurations.mjs';
import { cpuMicros, memory } from './proc-stats.mjs';
import { writeReport } from './report.mjs';

const require = createRequire(import.meta.url);
const env = process.env;
const DATABASE_URL = env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(env.BENCH_SECONDS ?? 8);
const WARMUP_SECONDS = Number(env.BENCH_WARMUP_SECONDS ?? 2);
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 8);
const ROUTES = { q3: '/users/7/orders', q20: '/users-with-orders' };

const log = (message) => process.stdout.write(`${message}\n`);

async function main() {
  await seedDatabase();
  const sink = await startOtlpSink();
  const configs = configurations(sink);
  const names = Object.keys(configs);
  /** samples[config][route] = [{ throughput, p99, cpuMicrosPerRequest, rss }] */
  const samples = Object.fromEntries(names.map((name) => [name, { q3: [], q20: [] }]));
  const started = Date.now();
  log(`bench: ${ROUNDS} rounds × ${names.length} configurations × 2 routes, ${SECONDS} s each (+${WARMUP_SECONDS} s warm-up), ${CONNECTIONS} connections, ${os.cpus().length} cores`);

  for (let round = 0; round < ROUNDS; round += 1) {
    // Rotate the order each round so slow drift of the machine spreads over all configurations.
    const order = names.map((_, i) => names[(i + round) % names.length]);
    for (const name of order) {
      const app = await startApp(configs[name]);
      try {
        await runLoad(`${app.url}${ROUTES.q3}`, WARMUP_SECONDS);
        for (const [route, path] of Object.entries(ROUTES)) {
          const cpuBefore = cpuMicros(app.pid);
          const load = await runLoad(`${app.url}${path}`, SECONDS);
          const cpu = cpuMicros(app.pid) - cpuBefore;
          if (load.errors > 0) throw new Error(`${name} ${path}: ${load.errors} failed requests`);
          const sample = { throughput: load.throughput, p99: load.p99, cpuMicrosPerRequest: cpu / load.requests, rss: memory(app.pid).rss };
          samples[name][route].push(sample);
          log(`round ${round + 1}/${ROUNDS} ${name} ${route.padEnd(3)} ${sample.throughput.toFixed(0).padStart(6)} req/s  p99 ${String(sample.p99).padStart(4)} ms  ${sample.cpuMicrosPerRequest.toFixed(0).padStart(5)} µs CPU/req  RSS ${(sample.rss / 2 ** 20).toFixed(0)} MiB`);
        }
      } finally {
        await app.stop();
      }
    }
  }
  await sink.close();
  const files = await writeReport({
    samples,
    labels: Object.fromEntries(names.map((name) => [name, configs[name].label])),
    env: { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, rounds: ROUNDS, seconds: SECONDS, connections: CONNECTIONS, routes: ROUTES, date: new Date().toISOString(), wallSeconds: Math.round((Date.now() - started) / 1000) },
  });
  log(`\nwrote ${files.join(', ')}`);
}

async function seedDatabase() {
  const { Pool } = require('pg');
  const { seed } = require('../examples/demo/seed.js');
  const pool = new Pool({ connectionString: DATABASE_URL, max: 1 });
  try {
    await seed(pool);
  } finally {
    await pool.end();
  }
}

/** Accepts OTLP exports and discards them; also hands out free ports for metrics endpoints. */
async function startOtlpSink() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/x-protobuf' });
      res.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${server.address().port}`;
  let nextMetricsPort = 19500 + Math.floor(Math.random() * 400);
  return {
    otlpBase: base,
    otlpUrl: `${base}/v1/traces`,
    metricsPort: () => (nextMetricsPort += 1),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

async function startApp(config) {
  const child = spawn(process.execPath, config.args, {
    env: { ...env, ...config.env, DATABASE_URL, PORT: '0', PG_POOL_MAX: '10', REQUEST_BUDGET_SUMMARY: 'false' },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`app (${config.label}) did not start`)), 20_000);
    child.once('exit', (code) => reject(new Error(`app (${config.label}) exited with ${code}`)));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /listening on (http:\/\/\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  return {
    url,
    pid: child.pid,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await once(child, 'exit');
      clearTimeout(timer);
    },
  };
}

async function runLoad(url, seconds) {
  const child = spawn(process.execPath, [new URL('./load.mjs', import.meta.url).pathname, url, String(seconds), String(CONNECTIONS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`load generator exited with ${code}`);
  return JSON.parse(output.trim().split('\n').pop());
}

main().catch((error) => {
  process.stderr.write(`bench failed: ${error.stack ?? error}\n`);
  process.exit(1);
});
