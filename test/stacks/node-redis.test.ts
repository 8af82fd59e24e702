/**
 * node-redis (`redis` 6 / `@redis/client` 6) end to end: each request's cost.db.queries is held
 * against the commands Redis itself reports through MONITOR on the app's database (index 9).
 *
 * What counts: every command the server runs for the request, as MONITOR shows it. A MULTI
 * transaction of n commands is n + 2 (MULTI and EXEC included); a pipeline of n is n. The
 * connection handshake (HELLO, SELECT of the database, CLIENT SETINFO) belongs to the connection,
 * not to the request that happened to open it: it is charged to no request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { redisTruth, type RedisTruth } from '../support/db-truth';
import { concurrently } from '../support/http';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';
import { awaitServerSpan, costOf, tracedGet } from '../support/traced-request';

const DB = 9;
const BACKGROUND_KEY = 'rb:nr:background';
// Sent by node-redis when it opens a connection (HELLO runs before SELECT, on database 0).
const HANDSHAKE = new Set(['hello', 'select', 'client', 'auth']);

let receiver: OtlpReceiver;
let app: AppProcess;
let truth: RedisTruth;
// Request ids in keys: unique per run, so no two requests (or runs) share a key.
let nextId = (Date.now() % 1_000_000) * 100;

beforeAll(async () => {
  [receiver, truth] = await Promise.all([startOtlpReceiver(), redisTruth(DB)]);
  app = await startApp({
    script: 'test/fixtures/stacks/node-redis-app.js',
    timeoutMs: 30_000, // slow starts on a busy machine are not what this tests
    env: {
      OTEL_SERVICE_NAME: 'node-redis-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      REDIS_DB: String(DB),
      REDIS_POOL_MAX: '5',
      // Commands outside any request, on the same pool, all along.
      BACKGROUND_INTERVAL_MS: '3',
    },
  });
});

afterAll(async () => {
  await app?.stop();
  await Promise.all([receiver?.close(), truth?.close()]);
});

const isBackground = (command: string[]) => command[1] === BACKGROUND_KEY;
const isHandshake = (command: string[]) => HANDSHAKE.has(command[0]);
const ofRequest = (id: number) => (command: string[]) => command.slice(1).some((arg) => arg.startsWith(`rb:nr:${id}:`));

describe('one request at a time, against MONITOR', () => {
  it.each([
    ['/items/ID/1', 1, ['get']],
    ['/items/ID/5', 5, ['get', 'get', 'get', 'get', 'get']],
    ['/multi/ID/3', 5, ['multi', 'set', 'set', 'set', 'exec']],
    ['/multi-raw/ID', 4, ['multi', 'set', 'get', 'exec']],
    ['/pipeline/ID/4', 4, ['incr', 'incr', 'incr', 'incr']],
    ['/health', 0, []],
  ])('%s: cost.db.queries = %i = the commands Redis ran for it', async (path, expected, names) => {
    const id = (nextId += 1);
    let result: Awaited<ReturnType<typeof costOf>> | undefined;
    const seen = await truth.during(async () => {
      result = await costOf(receiver, `${app.url}${path.replace('ID', String(id))}`);
    });
    const ran = seen.filter((c) => !isBackground(c) && !isHandshake(c));
    expect(ran.map((c) => c[0])).toEqual(names);
    expect(result!.response.status).toBe(200);
    expect(result!.server.attributes['cost.db.queries']).toBe(ran.length);
    expect(ran.length).toBe(expected);
  });

  it('reports the N+1 with the redis-common statement, fingerprinted', async () => {
    const id = (nextId += 1);
    const { server } = await costOf(receiver, `${app.url}/items/${id}/12`);
    expect(server.attributes['cost.db.queries']).toBe(12);
    expect(server.attributes['cost.db.repeated_count']).toBe(12);
    expect(server.attributes['cost.db.repeated_statement']).toBe('GET rb:nr:?:item:?');
  });

  it('counts a transaction as its commands plus MULTI and EXEC, with spans for both', async () => {
    const id = (nextId += 1);
    const { server, trace } = await costOf(receiver, `${app.url}/multi/${id}/4`);
    expect(server.attributes['cost.db.queries']).toBe(6);
    expect(server.attributes['cost.db.repeated_statement']).toBe('SET rb:nr:?:m:? [? other arguments]');
    expect(server.attributes['cost.db.repeated_count']).toBe(4);
    const framing = trace.filter((s) => s.name === 'redis-MULTI' || s.name === 'redis-EXEC').map((s) => [s.name, s.attributes['db.query.text']]);
    expect(framing.sort()).toEqual([
      ['redis-EXEC', 'EXEC'],
      ['redis-MULTI', 'MULTI'],
    ]);
  });

  it('charges a new connection’s handshake to no request', async () => {
    const id = (nextId += 1);
    let result: Awaited<ReturnType<typeof costOf>> | undefined;
    const seen = await truth.during(async () => {
      result = await costOf(receiver, `${app.url}/fresh/${id}`);
    });
    const mine = seen.filter((c) => !isBackground(c));
    // MONITOR shows the new connection's SELECT on this database, then the request's GET.
    expect(mine).toContainEqual(['select', String(DB)]);
    expect(mine.filter((c) => !isHandshake(c))).toEqual([['get', `rb:nr:${id}:fresh`]]);
    expect(result!.server.attributes['cost.db.queries']).toBe(1);
  });
});

describe('30 requests in flight on a pool of 5 connections, with background commands', () => {
  it('attributes every command to its own request and none of the background ones', async () => {
    // 1..30 in a fixed scrambled order (7 is coprime with 30), so a failure reproduces.
    const counts = Array.from({ length: 30 }, (_, i) => ((i * 7) % 30) + 1);
    const ids = counts.map(() => (nextId += 1));
    let started: Awaited<ReturnType<typeof tracedGet>>[] = [];
    const seen = await truth.during(async () => {
      started = await concurrently(30, (i) => tracedGet(`${app.url}/work/${ids[i]}/${counts[i]}`));
    });
    let charged = 0;
    for (const [i, request] of started.entries()) {
      expect(request.response.status).toBe(200);
      const { server } = await awaitServerSpan(receiver, request);
      const keyed = seen.filter(ofRequest(ids[i])).length;
      // n GETs + SET + INCR carry the request's keys; MULTI and EXEC carry none.
      expect({ n: counts[i], keyed, queries: server.attributes['cost.db.queries'], repeated: server.attributes['cost.db.repeated_count'] }).toEqual({
        n: counts[i],
        keyed: counts[i] + 2,
        queries: keyed + 2,
        repeated: counts[i],
      });
      charged += Number(server.attributes['cost.db.queries']);
    }
    // Everything the server ran in the window, background and handshakes aside, was charged.
    const background = seen.filter(isBackground).length;
    expect(background).toBeGreaterThan(0);
    expect(charged).toBe(seen.filter((c) => !isBackground(c) && !isHandshake(c)).length);

    // The background commands are roots of their own, and no request carries their statement.
    const spans = await receiver.waitFor((all) => all.filter((s) => s.attributes['db.query.text'] === `INCR ${BACKGROUND_KEY}`).length > 0);
    const backgroundSpans = spans.filter((s) => s.attributes['db.query.text'] === `INCR ${BACKGROUND_KEY}`);
    expect(backgroundSpans.filter((s) => s.parentSpanId !== '')).toEqual([]);
    expect(receiver.serverSpans().filter((s) => String(s.attributes['cost.db.repeated_statement']).includes('background'))).toEqual([]);
  });
});
