/**
 * `npm run bench:instructions`: CPU per request as instructions counted by valgrind's callgrind,
 * which are the same run after run whatever else the machine does — the steady figure beside
 * `npm run bench`'s CPU µs, which a shared 2-core machine moves by tens of percent.
 *
 * Each configuration (configurations.mjs) is started under callgrind twice, serving 20 warm-up
 * requests and then N or 3·N sequential requests over one keep-alive connection; the difference
 * between the two totals divided by 2·N is its instructions per request (start-up, warm-up and
 * shutdown cancel out). Pairs of configurations give the ratios `npm run bench` reports.
 *
 * Env: BENCH_CONFIGS (default e,d), BENCH_ROUTE (q3 or q20, default q3), BENCH_REQUESTS (N, default
 * 300 on q3 and 100 on q20), BENCH_CONCURRENCY (requests in flight, each on its own connection,
 * default 1: with several, requests interleave, as memory attribution sees them under load), DATABASE_URL. Needs valgrind. Under callgrind requests are ~50× slower,
 * so time-based budget limits breach more often than they would (a breached unsampled request
 * exports its root): the demo's budgets are used as they are, which only favours plain OpenTelemetry.
 * Writes bench/results/instructions.{json,md}.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { configurations } from './configurations.mjs';
import { ROUTES, seedDatabase, selectConfigurations, startOtlpSink } from './harness.mjs';

const env = process.env;
const DATABASE_URL = env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const ROUTE = env.BENCH_ROUTE ?? 'q3';
const REQUESTS = Number(env.BENCH_REQUESTS ?? (ROUTE === 'q20' ? 100 : 300));
const CONCURRENCY = Math.max(1, Number(env.BENCH_CONCURRENCY ?? 1));
const WARMUP = 20;
const log = (message) => process.stdout.write(`${message}\n`);

async function main() {
  if (!(ROUTE in ROUTES)) throw new Error(`BENCH_ROUTE must be one of ${Object.keys(ROUTES).join(', ')}`);
  if (spawnSync('valgrind', ['--version']).status !== 0) throw new Error('valgrind is not installed (apt-get install valgrind)');
  await seedDatabase(DATABASE_URL);
  const sink = await startOtlpSink();
  const configs = selectConfigurations(configurations(sink), env.BENCH_CONFIGS ?? 'e,d');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rb-instructions-'));
  const started = Date.now();
  const perRequest = {};
  try {
    log(
      `bench:instructions: ${Object.keys(configs).join(', ')} on ${ROUTE} (${ROUTES[ROUTE]}), ${REQUESTS} and ${3 * REQUESTS} requests each, ${CONCURRENCY} in flight, under callgrind`,
    );
    // Both runs of every configuration at once: instruction counts do not depend on the load.
    const runs = Object.entries(configs).flatMap(([name, config]) =>
      [REQUESTS, 3 * REQUESTS].map(async (n) => ({ name, n, total: await countInstructions(config, n, path.join(dir, `${name}-${n}.out`)) })),
    );
    const results = [];
    for (let i = 0; i < runs.length; i += 2) results.push(...(await Promise.all(runs.slice(i, i + 2))));
    for (const name of Object.keys(configs)) {
      const [short, long] = [REQUESTS, 3 * REQUESTS].map((n) => results.find((r) => r.name === name && r.n === n).total);
      perRequest[name] = (long - short) / (2 * REQUESTS);
      log(`${name}: ${Math.round(perRequest[name]).toLocaleString('en')} instructions per request (${configs[name].label})`);
    }
  } finally {
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const ratios = {};
  for (const [over, under] of [
    ['d', 'e'],
    ['c', 'b'],
    ['f', 'a'],
    ['d', 'a'],
    ['e', 'a'],
    ['d', 'g'],
  ]) {
    if (perRequest[over] !== undefined && perRequest[under] !== undefined)
      ratios[`instructions_${over}_over_${under}`] = round(perRequest[over] / perRequest[under]);
  }
  const result = {
    route: ROUTE,
    path: ROUTES[ROUTE],
    requests: REQUESTS,
    concurrency: CONCURRENCY,
    perRequest,
    ratios,
    date: new Date().toISOString(),
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  writeFileSync('bench/results/instructions.json', `${JSON.stringify(result, null, 2)}\n`);
  const rows = Object.entries(perRequest).map(([name, count]) => `| (${name}) ${configs[name].label} | ${Math.round(count).toLocaleString('en')} |`);
  const ratioRows = Object.entries(ratios).map(([key, value]) => `| ${key.replace('instructions_', '').replace('_over_', ' / ')} | ${value} |`);
  writeFileSync(
    'bench/results/instructions.md',
    `# Instructions per request (callgrind)\n\n${result.date} · route ${ROUTE} \`${ROUTES[ROUTE]}\` · (${3 * REQUESTS} − ${REQUESTS} requests) / ${2 * REQUESTS}\n\n| configuration | instructions per request |\n|---|---:|\n${rows.join('\n')}\n\n| ratio | value |\n|---|---:|\n${ratioRows.join('\n')}\n`,
  );
  log('wrote bench/results/instructions.json, bench/results/instructions.md');
}

/** Total instructions of one app life under callgrind serving `requests` requests after the warm-up. */
async function countInstructions(config, requests, outFile) {
  const child = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${outFile}`, process.execPath, ...config.args], {
    env: { ...env, ...config.env, DATABASE_URL, PORT: '0', PG_POOL_MAX: '10', REQUEST_BUDGET_SUMMARY: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${config.label} did not start under callgrind within 10 minutes`)), 600_000);
    child.once('exit', (code) => reject(new Error(`${config.label} exited with ${code}: ${stderr}`)));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /listening on (http:\/\/\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  await concurrentGets(`${url}${ROUTES[ROUTE]}`, WARMUP);
  await concurrentGets(`${url}${ROUTES[ROUTE]}`, requests);
  child.kill('SIGTERM');
  await once(child, 'exit');
  const summary = /^summary: (\d+)$/m.exec(readFileSync(outFile, 'utf8'));
  if (summary === null) throw new Error(`no instruction total in ${outFile}`);
  return Number(summary[1]);
}

/** `n` requests, CONCURRENCY at a time, each stream sequential on its own connection. */
function concurrentGets(url, n) {
  const streams = Array.from({ length: CONCURRENCY }, (_, index) => sequentialGets(url, Math.floor(n / CONCURRENCY) + (index < n % CONCURRENCY ? 1 : 0)));
  return Promise.all(streams);
}

async function sequentialGets(url, n) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < n; i += 1) {
      await new Promise((resolve, reject) => {
        const request = http.get(url, { agent, timeout: 120_000 }, (response) => {
          if (response.statusCode !== 200) reject(new Error(`${url} answered ${response.statusCode}`));
          response.resume();
          response.on('end', resolve);
        });
        request.on('timeout', () => request.destroy(new Error(`${url} did not answer within 120 s`)));
        request.on('error', reject);
      });
    }
  } finally {
    agent.destroy();
  }
}

function round(value) {
  return Math.round(value * 1000) / 1000;
}

main().catch((error) => {
  process.stderr.write(`bench:instructions failed: ${error.stack ?? error}\n`);
  process.exit(1);
});
