/**
 * Never silently wrong about libraries: a known data or HTTP library that is loaded but cannot be
 * counted gets exactly one line on stderr naming it, the reason and the fix, whether it was
 * loaded before request-budget started, is of a version its instrumentation does not support,
 * has its instrumentation turned off, or has no instrumentation at all. Libraries that are
 * counted get no line. Fake packages (a `pg` 7.0.0, a `better-sqlite3`) are written to a
 * temporary node_modules for the apps to load.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess, type StartAppOptions } from '../support/app-process';

const APP = 'test/fixtures/library-coverage/load-libraries-app.js';
const FIX_ORDER = 'fix: start the app with `node --require @request-budget/node/register` (ES modules: `--import`), or call start() before requiring pg';
const PG_7 =
  'request-budget: pg 7.0.0 is not supported by @opentelemetry/instrumentation-pg (pg >=8.0.3 <9), so its queries are not counted; fix: use a supported version of pg';
const SQLITE =
  'request-budget: better-sqlite3 9.4.0 is loaded, but request-budget does not count queries made with better-sqlite3 (no instrumentation for it); fix: pass an OpenTelemetry instrumentation for better-sqlite3 in start({ extraInstrumentations }), or use a library request-budget instruments';

let fakes: string;
const apps: AppProcess[] = [];

beforeAll(() => {
  fakes = mkdtempSync(join(tmpdir(), 'rb-library-coverage-'));
  for (const [name, version] of [
    ['pg', '7.0.0'],
    ['better-sqlite3', '9.4.0'],
  ]) {
    mkdirSync(join(fakes, 'node_modules', name), { recursive: true });
    writeFileSync(join(fakes, 'node_modules', name, 'package.json'), JSON.stringify({ name, version, main: 'index.js' }));
    writeFileSync(join(fakes, 'node_modules', name, 'index.js'), `module.exports = { fake: ${JSON.stringify(name)} };\n`);
  }
  // Imported as an ES module, resolving the fakes from its own directory.
  writeFileSync(join(fakes, 'entry.mjs'), "import pg from 'pg';\nimport sqlite from 'better-sqlite3';\nexport default [pg, sqlite];\n");
});

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.stop()));
});

afterAll(() => {
  rmSync(fakes, { recursive: true, force: true });
});

/** Runs the app to readiness and to its end, and returns its `request-budget:` lines on stderr. */
async function diagnosticsOf(options: Omit<StartAppOptions, 'env'> & { env: Record<string, string | undefined> }): Promise<string[]> {
  const app = await startApp({
    timeoutMs: 30_000,
    ...options,
    env: {
      OTEL_TRACES_EXPORTER: 'none',
      REQUEST_BUDGET_SUMMARY: 'false',
      OTEL_NODE_DISABLED_INSTRUMENTATIONS: undefined,
      OTEL_NODE_ENABLED_INSTRUMENTATIONS: undefined,
      ...options.env,
    },
  });
  apps.push(app);
  // Every line is out once the process has exited and its pipes are drained.
  await app.stop();
  return app.stderrLines.filter((line) => line.startsWith('request-budget:'));
}

describe('loaded before request-budget started', () => {
  it('names pg, required before the app called start() itself, and the fix', async () => {
    const lines = await diagnosticsOf({ script: 'test/fixtures/library-coverage/pg-before-start-app.js', requireRegister: false, env: {} });
    expect(lines).toEqual([`request-budget: pg 8.23.1 was loaded before request-budget started, so its queries are not counted; ${FIX_ORDER}`]);
  });

  it('names pg imported by an ES module before it called start()', async () => {
    const lines = await diagnosticsOf({ script: 'test/fixtures/library-coverage/pg-before-start-app.mjs', requireRegister: false, env: {} });
    expect(lines).toEqual([`request-budget: pg 8.23.1 was loaded before request-budget started, so its queries are not counted; ${FIX_ORDER}`]);
  });
});

describe('loaded after start', () => {
  it('says nothing for libraries it counts, in supported versions', async () => {
    const lines = await diagnosticsOf({ script: APP, env: { LOAD: 'pg,mysql2,ioredis,redis,postgres,express,koa,fastify,undici' } });
    expect(lines).toEqual([]);
  });

  it('names a version its instrumentation does not support, and a library nothing instruments, once each', async () => {
    // Each is required twice.
    const lines = await diagnosticsOf({ script: APP, env: { LOAD_FROM: fakes, LOAD: 'pg,better-sqlite3' } });
    expect(lines).toEqual([PG_7, SQLITE]);
  });

  it('does the same for ES modules imported under --import', async () => {
    const lines = await diagnosticsOf({
      script: APP,
      requireRegister: false,
      nodeArgs: ['--import', '@request-budget/node/register'],
      env: { IMPORT_ENTRY: join(fakes, 'entry.mjs') },
    });
    expect(lines).toEqual([PG_7, SQLITE]);
  });
});

describe('instrumentation turned off', () => {
  it('by OTEL_NODE_DISABLED_INSTRUMENTATIONS: one line when pg loads, none for redis beside it', async () => {
    const lines = await diagnosticsOf({ script: APP, env: { LOAD: 'pg,redis', OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'pg' } });
    expect(lines).toEqual([
      'request-budget: pg 8.23.1 is loaded, but OTEL_NODE_DISABLED_INSTRUMENTATIONS turns off its instrumentation "pg", so its queries are not counted; fix: remove pg from OTEL_NODE_DISABLED_INSTRUMENTATIONS',
    ]);
  });

  it('by OTEL_NODE_ENABLED_INSTRUMENTATIONS: one line for node-redis (redis and @redis/client are one library)', async () => {
    const lines = await diagnosticsOf({ script: APP, env: { LOAD: 'redis,pg', OTEL_NODE_ENABLED_INSTRUMENTATIONS: 'http,pg' } });
    expect(lines).toEqual([
      'request-budget: @redis/client 6.4.0 is loaded, but OTEL_NODE_ENABLED_INSTRUMENTATIONS leaves out its instrumentation "redis", so its commands are not counted; fix: add redis to OTEL_NODE_ENABLED_INSTRUMENTATIONS',
    ]);
  });
});
