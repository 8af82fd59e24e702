/**
 * What `npm run bench` and `npm run bench:floor` share: the seeded database, a local OTLP sink,
 * starting the demo app in one configuration, and the interleaved rounds that measure every
 * configuration on each route with load from a second process.
 */
import os from 'node:os';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { createRequire } from 'node:module';
import readline from 'node:readline';
import { cpuMicros, memory } from './proc-stats.mjs';

const require = createRequire(import.meta.url);

export const ROUTES = { q3: '/users/7/orders', q20: '/users-with-orders' };

/** The machine and the run's settings, recorded beside every result. */
export function runEnvironment(settings, startedAtMs, extra = {}) {
  return {
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    ...extra,
    rounds: settings.rounds,
    seconds: settings.seconds,
    connections: settings.connections,
    routes: ROUTES,
    date: new Date().toISOString(),
    wallSeconds: Math.round((Date.now() - startedAtMs) / 1000),
  };
}

/** Run settings from the environment, with the calling benchmark's defaults. */
export function benchSettings(defaults) {
  const env = process.env;
  return {
    databaseUrl: env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    rounds: Number(env.BENCH_ROUNDS ?? defaults.rounds),
    seconds: Number(env.BENCH_SECONDS ?? defaults.seconds),
    warmupSeconds: Number(env.BENCH_WARMUP_SECONDS ?? 2),
    connections: Number(env.BENCH_CONNECTIONS ?? 8),
  };
}

/**
 * Picks the configurations named in a comma-separated list (e.g. BENCH_CONFIGS=a,e,d), keeping
 * the order they are defined in; all of them when the list is empty.
 */
export function selectConfigurations(configs, list) {
  const wanted = (list ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  const unknown = wanted.filter((name) => !(name in configs));
  if (unknown.length > 0) throw new Error(`unknown configuration ${unknown.join(', ')} (known: ${Object.keys(configs).join(', ')})`);
  const names = Object.keys(configs).filter((name) => wanted.length === 0 || wanted.includes(name));
  return Object.fromEntries(names.map((name) => [name, configs[name]]));
}

export async function seedDatabase(databaseUrl) {
  const { Pool } = require('pg');
  const { seed } = require('../examples/demo/seed.js');
  const pool = new Pool({ connectionString: databaseUrl, max: 1 });
  try {
    await seed(pool);
  } finally {
    await pool.end();
  }
}

/**
 * Accepts OTLP exports and discards them, counting the bytes (so a run shows that sampling
 * really cut the export); also hands out free ports for metrics endpoints.
 */
export async function startOtlpSink() {
  let bytes = 0;
  const server = http.createServer((req, res) => {
    req.on('data', (chunk) => (bytes += chunk.length));
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
    bytesReceived: () => bytes,
    metricsPort: () => (nextMetricsPort += 1),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/**
 * Measures each configuration on each route, `rounds` times. Each round starts every
 * configuration once, in an order rotated by one per round so slow drift of the machine spreads
 * over all of them; sample i of every configuration therefore comes from the same round, and
 * ratios can be taken pair by pair.
 *
 * Returns samples[config][route] = [{ throughput, p99, cpuMicrosPerRequest, rss }] (one per
 * round) and otlpBytesPerRequest[config] = [bytes per request over the app's whole life].
 */
export async function runInterleaved({ configs, settings, sink, log }) {
  const names = Object.keys(configs);
  const samples = Object.fromEntries(names.map((name) => [name, Object.fromEntries(Object.keys(ROUTES).map((route) => [route, []]))]));
  const otlpBytesPerRequest = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 0; round < settings.rounds; round += 1) {
    const order = names.map((_, i) => names[(i + round) % names.length]);
    for (const name of order) {
      const bytesBefore = sink.bytesReceived();
      let requests = 0;
      const app = await startApp(configs[name], settings);
      try {
        requests += (await runLoad(`${app.url}${ROUTES.q3}`, settings.warmupSeconds, settings.connections)).requests;
        for (const [route, path] of Object.entries(ROUTES)) {
          const cpuBefore = cpuMicros(app.pid);
          const load = await runLoad(`${app.url}${path}`, settings.seconds, settings.connections);
          const cpu = cpuMicros(app.pid) - cpuBefore;
          if (load.errors > 0) throw new Error(`${name} ${path}: ${load.errors} failed requests`);
          requests += load.requests;
          const sample = { throughput: load.throughput, p99: load.p99, cpuMicrosPerRequest: cpu / load.requests, rss: memory(app.pid).rss };
          samples[name][route].push(sample);
          log(
            `round ${round + 1}/${settings.rounds} ${name} ${route.padEnd(3)} ${sample.throughput.toFixed(0).padStart(6)} req/s  p99 ${String(sample.p99).padStart(4)} ms  ${sample.cpuMicrosPerRequest.toFixed(0).padStart(5)} µs CPU/req  RSS ${(sample.rss / 2 ** 20).toFixed(0)} MiB`,
          );
        }
      } finally {
        // The app flushes its span exporter on SIGTERM, so the sink has every byte once it exits.
        await app.stop();
      }
      otlpBytesPerRequest[name].push((sink.bytesReceived() - bytesBefore) / requests);
    }
  }
  return { samples, otlpBytesPerRequest };
}

async function startApp(config, settings) {
  const child = spawn(process.execPath, config.args, {
    env: { ...process.env, ...config.env, DATABASE_URL: settings.databaseUrl, PORT: '0', PG_POOL_MAX: '10', REQUEST_BUDGET_SUMMARY: 'false' },
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

async function runLoad(url, seconds, connections) {
  const child = spawn(process.execPath, [new URL('./load.mjs', import.meta.url).pathname, url, String(seconds), String(connections)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`load generator exited with ${code}`);
  return JSON.parse(output.trim().split('\n').pop());
}
