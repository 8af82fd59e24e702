// `npm run demo`: start PostgreSQL (embedded PGlite unless DATABASE_URL is set),
// seed it, run app.js under request-budget, send a short burst of traffic to
// every route, then shut everything down. request-budget's one-line-per-request
// summary arrives on the app's stderr, which is passed straight through.
//
// Env: DATABASE_URL (use this PostgreSQL instead of PGlite), PG_POOL_MAX (app
// pool size, default 10), DEMO_NO_REGISTER=1 (run the app without request-budget).

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { seed, ORDERS } from './seed.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

// How the app is started: exactly what a user would type, run from the repo root.
const REGISTER_ARGS = ['--require', '@request-budget/node/register'];
const APP_SCRIPT = 'examples/demo/app.js';

const OVERALL_TIMEOUT_MS = 60_000;
const LISTEN_TIMEOUT_MS = 20_000;
const EXIT_TIMEOUT_MS = 15_000;
const POOL_MAX = Number.parseInt(process.env.PG_POOL_MAX ?? '', 10) || 10;

// What the burst requests, with the cost each route is built to have.
// `check` throws if the body is not what the seeded data implies.
const ROUTES = [
  { path: '/health', cost: '0 queries', check: (b) => expect(b.ok === true, 'ok') },
  { path: '/users/7', cost: '1 query', check: (b) => expect(b.id === 7 && b.email === 'user7@example.test', 'user 7') },
  {
    path: '/users/7/orders',
    cost: '3 queries',
    check: (b) => expect(b.user.id === 7 && b.orders.length === 10 && b.orderCount === 100, 'user 7 with 10 of 100 orders'),
  },
  {
    path: '/users-with-orders',
    cost: '21 queries: N+1, one statement repeated 20 times, 2,020 rows',
    check: (b) => expect(b.users.length === 20 && b.users.every((u) => u.orderCount === 100), '20 users x 100 orders'),
  },
  { path: '/orders/count-slow', cost: `1 query, ${ORDERS} rows counted in JS`, check: (b) => expect(b.count === ORDERS, `count ${ORDERS}`) },
  { path: '/orders/count', cost: '1 query, 1 row', check: (b) => expect(b.count === ORDERS, `count ${ORDERS}`) },
  { path: '/report', cost: '0 queries, ~16 MB heap', check: (b) => expect(b.rows === 190_000, '190000 rows') /* REPORT_ROWS in app.js */ },
  {
    path: '/proxy',
    cost: '1 outgoing call, no timeout',
    check: (b) => expect(b.upstreamStatus === 200 && b.upstream.source === 'demo-upstream', 'upstream reply'),
  },
  {
    path: '/proxy-with-timeout',
    cost: '1 outgoing call, 1 s timeout',
    check: (b) => expect(b.upstreamStatus === 200 && b.upstream.source === 'demo-upstream', 'upstream reply'),
  },
];

function withoutPassword(url) {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.href;
  } catch {
    return '(unparsable URL)';
  }
}

function expect(ok, what) {
  if (!ok) throw new Error(`expected ${what}`);
}

// Everything that must be undone on the way out, success or failure.
const running = { pglite: undefined, app: undefined };

async function main() {
  const deadline = setTimeout(() => fail(new Error(`demo did not finish within ${OVERALL_TIMEOUT_MS / 1000} s`)), OVERALL_TIMEOUT_MS);
  process.once('SIGINT', () => fail(new Error('interrupted')));

  const major = Number(process.versions.node.split('.')[0]);
  if (major < 22) console.log(`note: running on Node ${process.versions.node}; request-budget needs Node >= 22.15 (npm run demo uses the repo's Node 24)`);

  let databaseUrl = process.env.DATABASE_URL;
  if (databaseUrl) console.log(`PostgreSQL from DATABASE_URL: ${withoutPassword(databaseUrl)}`);
  else databaseUrl = await startEmbeddedPostgres();
  await seedDatabase(databaseUrl);

  const baseUrl = await startApp(databaseUrl);
  const sent = await driveTraffic(baseUrl);
  // Stop the app before reporting, so its last summary lines come out first.
  await stopApp();
  await stopEmbeddedPostgres();

  clearTimeout(deadline);
  console.log(`\ndemo finished: ${sent} requests, all 200 with the expected data`);
  process.exit(0); // keep-alive sockets and the like must not hold the demo open
}

async function startEmbeddedPostgres() {
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const db = await PGlite.create(); // in memory; gone when the demo ends
  // PGlite is a single-session database. pglite-socket >= 0.2 multiplexes several
  // client connections onto it (queries run one at a time), but refuses
  // connections beyond maxConnections, so allow the app's whole pool plus one.
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: POOL_MAX + 1 });
  await server.start();
  running.pglite = { db, server };
  const url = `postgres://postgres@${server.getServerConn()}/postgres`;
  console.log(`embedded PostgreSQL: PGlite (in memory) at ${url}`);
  console.log(`  up to ${POOL_MAX + 1} connections, multiplexed onto one PGlite session: queries run one at a time,`);
  console.log("  so DB time includes waiting for other requests' queries. Set DATABASE_URL to use a real PostgreSQL.");
  return url;
}

async function stopEmbeddedPostgres() {
  const { pglite } = running;
  running.pglite = undefined;
  if (!pglite) return;
  await pglite.server.stop();
  await pglite.db.close();
}

async function seedDatabase(databaseUrl) {
  // Seeded from here, not from the app, so the app's telemetry starts clean.
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await seed(client);
  } finally {
    await client.end();
  }
}

function startApp(databaseUrl) {
  const args = process.env.DEMO_NO_REGISTER === '1' ? [APP_SCRIPT] : [...REGISTER_ARGS, APP_SCRIPT];
  console.log(`starting: node ${args.join(' ')}`);
  const app = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: {
      REQUEST_BUDGET_FILE: 'examples/demo/budgets.yaml',
      // The summary lines already say OVER BUDGET; the JSON breach lines would repeat them.
      REQUEST_BUDGET_ALERT_LOG: 'false',
      // A short burst: every request measured for memory (a service's default is 5% of the time).
      REQUEST_BUDGET_MEMORY_SAMPLE_RATIO: '1',
      ...process.env,
      DATABASE_URL: databaseUrl,
      PG_POOL_MAX: String(POOL_MAX),
      OTEL_SERVICE_NAME: 'request-budget-demo',
    },
    stdio: ['ignore', 'pipe', 'inherit'], // stderr straight through: that is where the summary goes
  });
  // 'close' (not 'exit') also waits for the app's stdout to be drained.
  const exited = new Promise((resolve) => app.once('close', (code, signal) => resolve({ code, signal })));
  running.app = { process: app, exited };

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`app did not print its listening line within ${LISTEN_TIMEOUT_MS / 1000} s`)), LISTEN_TIMEOUT_MS);
    app.once('error', reject);
    exited.then(({ code, signal }) => {
      const hint = args.includes(REGISTER_ARGS[1]) ? ' (is @request-budget/node built? `npm run build`; or set DEMO_NO_REGISTER=1)' : '';
      reject(new Error(`app exited before listening (code ${code}, signal ${signal})${hint}`));
    });
    createInterface({ input: app.stdout }).on('line', (line) => {
      console.log(line); // the app's own stdout, passed through
      const match = /^demo app listening on (http:\/\/\S+)$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
}

async function stopApp() {
  const { app } = running;
  running.app = undefined;
  if (!app || app.process.exitCode !== null || app.process.signalCode !== null) return;
  app.process.kill('SIGTERM');
  const timeout = new Promise((resolve) => setTimeout(resolve, EXIT_TIMEOUT_MS, 'timeout').unref());
  const result = await Promise.race([app.exited, timeout]);
  if (result === 'timeout') {
    app.process.kill('SIGKILL');
    throw new Error(`app did not exit within ${EXIT_TIMEOUT_MS / 1000} s of SIGTERM`);
  }
  if (result.code !== 0) throw new Error(`app exited with code ${result.code}, signal ${result.signal}`);
}

async function request(baseUrl, route) {
  let res, body;
  try {
    res = await fetch(baseUrl + route.path, { signal: AbortSignal.timeout(10_000) });
    body = await res.json();
  } catch (err) {
    const reason = err.name === 'TimeoutError' ? 'no response within 10 s' : err.message;
    throw new Error(`GET ${route.path}: ${reason}`);
  }
  if (res.status !== 200) throw new Error(`GET ${route.path} returned ${res.status}: ${JSON.stringify(body)}`);
  try {
    route.check(body);
  } catch (err) {
    throw new Error(`GET ${route.path}: ${err.message}, got ${JSON.stringify(body).slice(0, 200)}`);
  }
}

async function driveTraffic(baseUrl) {
  const width = Math.max(...ROUTES.map((r) => r.path.length));
  console.log(`\nrequesting ${baseUrl}: each route once in turn, then 3 rounds of all routes at once`);
  for (const route of ROUTES) console.log(`  GET ${route.path.padEnd(width)}  ${route.cost}`);
  console.log('');

  // One at a time first: these summaries are free of concurrency noise.
  for (const route of ROUTES) await request(baseUrl, route);
  // Then concurrent rounds, as a real service sees them (heap figures get noisier here).
  for (let round = 0; round < 3; round++) {
    await Promise.all(ROUTES.map((route) => request(baseUrl, route)));
  }
  return ROUTES.length * 4;
}

let failing = false;
function fail(err) {
  if (failing) return;
  failing = true;
  console.error(`\ndemo failed: ${err.message}`);
  // Do not wait for anything here: a graceful PGlite stop can hang while a query
  // is in flight, and the in-memory database dies with this process anyway.
  if (running.app) running.app.process.kill('SIGKILL');
  process.exit(1);
}

main().catch(fail);
