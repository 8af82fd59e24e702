/**
 * A data layer on Bluebird promises (chains, Bluebird.map with a concurrency limit, each/reduce,
 * coroutines, library copies from getNewLibraryCopy and the promise factory, a second installed
 * copy) over mysql2 and pg, end to end. Bluebird
 * runs its callbacks from its own queue, in the context of whichever request filled the queue
 * first, unless its asyncHooks option is on: request-budget turns it on as Bluebird loads.
 * Each cost record is held against MariaDB's general log for the request's own tag, and pg
 * totals against pg_stat_statements.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { mariadbTruth, pgTruth, type MariaDbTruth, type PgTruth } from '../support/db-truth';
import { concurrently } from '../support/http';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';
import { repoRoot } from '../support/paths';
import { awaitServerSpan, tracedGet } from '../support/traced-request';
import { countTagged, expectExactAttribution, runTagged } from './tagged-requests';

const USER = 'rb_bluebird';

let receiver: OtlpReceiver;
let mariadb: MariaDbTruth;
let pg: PgTruth;
let app: AppProcess;
let oldCopyDir: string;
let secondCopyDir: string;

function startBluebirdApp(env: Record<string, string> = {}): Promise<AppProcess> {
  return startApp({
    // Starting takes seconds when the shared machine is busy.
    timeoutMs: 40_000,
    script: 'test/fixtures/stacks/bluebird-app.js',
    env: {
      OTEL_SERVICE_NAME: 'bluebird-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_METRICS_EXPORTER: 'none',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      OTEL_BSP_MAX_QUEUE_SIZE: '20000',
      MYSQL_USER: USER,
      DATABASE_URL: pg.url,
      POOL_MAX: '5',
      // Every tick makes three statements; MariaDB's general log keeps them all, so not too many.
      BACKGROUND_INTERVAL_MS: '20',
      ...env,
    },
  });
}

/** A second installed copy of this Bluebird (3.7.2), at another path: its own module, its own settings. */
function secondBluebirdInstall(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rb-second-bluebird-'));
  const target = path.join(dir, 'node_modules', 'bluebird');
  const source = path.join(repoRoot, 'node_modules', 'bluebird');
  fs.cpSync(path.join(source, 'js', 'release'), path.join(target, 'js', 'release'), { recursive: true });
  fs.copyFileSync(path.join(source, 'package.json'), path.join(target, 'package.json'));
  return dir;
}

/**
 * Bluebird as it was before 3.7 (no asyncHooks option), for the warning: this Bluebird's own
 * files in a package that says it is 3.5.5, which request-budget must leave alone and report.
 */
function oldBluebirdCopy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rb-old-bluebird-'));
  const target = path.join(dir, 'node_modules', 'bluebird');
  const source = path.join(repoRoot, 'node_modules', 'bluebird');
  fs.cpSync(path.join(source, 'js', 'release'), path.join(target, 'js', 'release'), { recursive: true });
  const manifest = JSON.parse(fs.readFileSync(path.join(source, 'package.json'), 'utf8'));
  fs.writeFileSync(path.join(target, 'package.json'), JSON.stringify({ ...manifest, version: '3.5.5' }));
  return dir;
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  [mariadb, pg] = await Promise.all([mariadbTruth(USER), pgTruth(USER)]);
  secondCopyDir = secondBluebirdInstall();
  app = await startBluebirdApp({ SECOND_BLUEBIRD_PATH: path.join(secondCopyDir, 'node_modules', 'bluebird', 'js', 'release', 'bluebird.js') });
  // Open every pooled connection before anything is measured.
  await Promise.all(Array.from({ length: 5 }, () => fetch(`${app.url}/chain/1?tag=warmup`)));
  await Promise.all(Array.from({ length: 5 }, () => fetch(`${app.url}/pg/1`)));
});

afterAll(async () => {
  await app?.stop();
  await Promise.all([mariadb?.close(), pg?.close()]);
  await receiver?.close();
  if (oldCopyDir !== undefined) fs.rmSync(oldCopyDir, { recursive: true, force: true });
  if (secondCopyDir !== undefined) fs.rmSync(secondCopyDir, { recursive: true, force: true });
});

describe('Bluebird 3.7 data layer on mysql2', () => {
  it('one request at a time: each request exactly its statements', async () => {
    const cases: [path: string, statements: number][] = [
      ['/chain/4', 4],
      ['/map/6', 6],
      ['/each/3', 5],
      ['/coroutine/4', 4],
      ['/copy/3', 3],
      ['/factory-copy/3', 3],
      ['/second-install/3', 3],
    ];
    const { results, delta } = await runTagged(
      receiver,
      mariadb,
      app.url,
      cases.map(([path]) => path),
      { prefix: 'bb1', oneAtATime: true },
    );
    expect(results.map((r) => [r.path, r.serverStatements, r.queries])).toEqual(cases.map(([path, n]) => [path, n, n]));
    expectExactAttribution(results, delta, 'background');
  });

  it('30 requests in flight on a pool of 5 beside the background loop: every request exact', async () => {
    const kinds = ['/chain/', '/map/', '/each/', '/coroutine/', '/copy/', '/factory-copy/', '/second-install/'];
    const paths = Array.from({ length: 30 }, (_, i) => `${kinds[i % kinds.length]}${1 + ((i * 7) % 6)}`);
    const { results, delta } = await runTagged(receiver, mariadb, app.url, paths, { prefix: 'bb30' });
    expectExactAttribution(results, delta, 'background');
    expect(countTagged(delta, 'background')).toBeGreaterThan(0);
  });
});

describe('Bluebird 3.7 data layer on pg', () => {
  it('30 requests in flight on a pool of 5: each exactly its statements, the server total their sum', async () => {
    const counts = Array.from({ length: 30 }, (_, i) => 1 + ((i * 7) % 6));
    let sent: Awaited<ReturnType<typeof tracedGet>>[] = [];
    const delta = await pg.during(async () => {
      sent = await concurrently(30, (i) => tracedGet(`${app.url}/pg/${counts[i]}`));
    });
    const queries: unknown[] = [];
    for (const request of sent) {
      expect(request.response.status).toBe(200);
      queries.push((await awaitServerSpan(receiver, request)).server.attributes['cost.db.queries']);
    }
    expect(queries).toEqual(counts);
    const total = counts.reduce((a, b) => a + b, 0);
    expect(delta.byStatement.get('SELECT $1::int AS bluebird_i')?.calls).toBe(total);
    expect(delta.byStatement.get('SELECT $1::int AS bluebird_background, $2::text AS kind')?.calls ?? 0).toBeGreaterThan(0);
    expect(delta.byStatement.size).toBe(2);
  });
});

describe('diagnostics', () => {
  it('the app on Bluebird 3.7 reported no problem on stderr', () => {
    expect(app.stderrLines.filter((line) => line.startsWith('request-budget:'))).toEqual([]);
  });
});

describe('Bluebird before 3.7', () => {
  it('is reported once on stderr, naming the fix', async () => {
    oldCopyDir = oldBluebirdCopy();
    const old = await startBluebirdApp({
      BLUEBIRD_PATH: path.join(oldCopyDir, 'node_modules', 'bluebird', 'js', 'release', 'bluebird.js'),
      BACKGROUND_INTERVAL_MS: '0',
    });
    try {
      const response = await fetch(`${old.url}/chain/2?tag=old_bluebird`);
      expect(response.status).toBe(200);
      const reports = old.stderrLines.filter((line) => line.startsWith('request-budget:') && line.includes('bluebird'));
      expect(reports).toHaveLength(1);
      expect(reports[0]).toContain('bluebird 3.5.5');
      expect(reports[0]).toContain('upgrade bluebird to 3.7 or later');
    } finally {
      await old.stop();
    }
  });
});
