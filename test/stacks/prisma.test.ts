/**
 * Prisma 7 with the pg driver adapter and @prisma/instrumentation on, end to end: Prisma's
 * `prisma:client:db_query` span (db.system.name, db.query.text) sits over the pg driver's span of
 * the same statement, and each statement is counted once, held against PostgreSQL's own count
 * (pg_stat_statements for the role rb_prisma), one request at a time and 30 in flight on a pool
 * of 5 beside a background query loop. The Prisma client is generated here, offline.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { pgTruth, type PgTruth } from '../support/db-truth';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';
import { repoRoot, requireFromRoot } from '../support/paths';
import { expectExactInFlight, oneRequest } from './pg-requests';

const ROLE = 'rb_prisma';
const FIXTURE = path.join(repoRoot, 'test/fixtures/stacks/prisma');
const CLIENT_DIR = path.join(FIXTURE, 'generated');
const USERS = 50;
const POSTS_PER_USER = 2;

let receiver: OtlpReceiver;
let truth: PgTruth;
let app: AppProcess;

/**
 * `prisma generate`, offline: Prisma 7 with a driver adapter needs no engine at run time, and the
 * schema engine the CLI looks for is never run by generate (any executable will do).
 */
function generateClient(): void {
  const cli = requireFromRoot.resolve('prisma/build/index.js');
  const result = spawnSync(process.execPath, [cli, 'generate', '--schema', path.join(FIXTURE, 'schema.prisma')], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 60_000,
    env: {
      ...process.env,
      PRISMA_SCHEMA_ENGINE_BINARY: '/bin/true',
      PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING: '1',
      PRISMA_HIDE_UPDATE_MESSAGE: '1',
      CHECKPOINT_DISABLE: '1',
    },
  });
  if (result.status !== 0 || !existsSync(path.join(CLIENT_DIR, 'index.js'))) {
    throw new Error(
      `prisma generate failed (exit ${result.status}${result.error ? `, ${result.error.message}` : ''}); the Prisma tests need the client in ${CLIENT_DIR}.\n${result.stdout}\n${result.stderr}`,
    );
  }
}

async function createTables(): Promise<void> {
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
  await admin.connect();
  try {
    await admin.query('DROP TABLE IF EXISTS rbpr_posts; DROP TABLE IF EXISTS rbpr_users');
    await admin.query('CREATE TABLE rbpr_users (id serial PRIMARY KEY, name text NOT NULL)');
    await admin.query('CREATE TABLE rbpr_posts (id serial PRIMARY KEY, title text NOT NULL, author_id int NOT NULL REFERENCES rbpr_users (id))');
    await admin.query("INSERT INTO rbpr_users (name) SELECT 'user-' || g FROM generate_series(1, $1::int) AS g", [USERS]);
    await admin.query("INSERT INTO rbpr_posts (title, author_id) SELECT 'post-' || g, (g - 1) / $2::int + 1 FROM generate_series(1, $1::int) AS g", [
      USERS * POSTS_PER_USER,
      POSTS_PER_USER,
    ]);
  } finally {
    await admin.end();
  }
}

beforeAll(async () => {
  generateClient();
  [receiver, truth] = await Promise.all([startOtlpReceiver(), pgTruth(ROLE), createTables()]).then(([r, t]) => [r, t] as const);
  app = await startApp({
    script: 'test/fixtures/stacks/prisma/prisma-app.js',
    env: {
      OTEL_SERVICE_NAME: 'prisma-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      OTEL_BSP_MAX_QUEUE_SIZE: '50000',
      DATABASE_URL: truth.url,
      PG_POOL_MAX: '5',
      BACKGROUND_INTERVAL_MS: '4',
      PRISMA_CLIENT_DIR: CLIENT_DIR,
    },
  });
  // Opens the pool's connections before anything is measured.
  await Promise.all(Array.from({ length: 8 }, () => fetch(`${app.url}/users/1`).then((r) => r.text())));
}, 90_000);

afterAll(async () => {
  await app?.stop();
  await truth?.close();
  await receiver?.close();
});

/** Each route's statements and the rows they return (INSERT … RETURNING returns one). */
const READS = [
  { path: '/users/3', statements: 1, rows: 1, repeated: 1 },
  { path: '/users/3/posts', statements: 2, rows: 1 + POSTS_PER_USER, repeated: 1 },
  { path: '/n-plus-one/10', statements: 11, rows: 20, repeated: 10 },
  { path: '/raw/3', statements: 1, rows: 1, repeated: 1 },
] as const;
const CREATE = { path: '/create', statements: 5, rows: 2 } as const;

describe('Prisma 7 + adapter-pg + @prisma/instrumentation', () => {
  it.each(READS)('$path: each statement once, as PostgreSQL counted them', async (route) => {
    const result = await oneRequest(receiver, truth, app.url, route.path);
    expect({ status: result.status, queries: result.queries, rows: result.rows, repeated: result.server.attributes['cost.db.repeated_count'] }).toEqual({
      status: 200,
      queries: route.statements,
      rows: route.rows,
      repeated: route.repeated,
    });
    expect(result.serverCount).toEqual({ statements: route.statements, rows: route.rows });
    // Prisma's span and the driver's, for every statement, both exported; one counted.
    const prismaQueries = result.trace.filter((s) => s.name === 'prisma:client:db_query' && s.attributes['db.system.name'] === 'postgresql');
    const driverQueries = result.trace.filter((s) => s.scope === '@opentelemetry/instrumentation-pg' && typeof s.attributes['db.query.text'] === 'string');
    expect([prismaQueries.length, driverQueries.length]).toEqual([route.statements, route.statements]);
  });

  it('reports the N+1 of findUnique in a loop with its statement', async () => {
    const result = await oneRequest(receiver, truth, app.url, '/n-plus-one/7');
    expect(result.server.attributes['cost.db.repeated_count']).toBe(7);
    expect(result.server.attributes['cost.db.repeated_statement']).toMatch(
      /^SELECT "public"\."rbpr_users"\."id", "public"\."rbpr_users"\."name" FROM "public"\."rbpr_users" WHERE \("public"\."rbpr_users"\."id" = \$1 AND \?=\?\) LIMIT \$2 OFFSET \$3$/,
    );
    expect(result.serverCount.statements).toBe(8);
  });

  it('counts the statements of a nested write in its transaction, BEGIN and COMMIT included', async () => {
    const result = await oneRequest(receiver, truth, app.url, CREATE.path);
    expect([result.status, result.queries, result.rows]).toEqual([200, CREATE.statements, CREATE.rows]);
    expect(result.serverCount.statements).toBe(CREATE.statements);
  });

  it('counts each request exactly with 30 in flight on a pool of 5 beside a background loop', async () => {
    await expectExactInFlight(receiver, truth, app.url, READS);
  });

  it('reports no setup problem', () => {
    expect(app.stderrLines.filter((line) => /registered twice|is active twice|was replaced|registered before|tried to register/.test(line))).toEqual([]);
  });
});
