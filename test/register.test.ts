/**
 * End to end: the `register` entry as users run it — the default summary line, other OTLP
 * encodings, ES modules through `--import`, bad environment values, the heap figures, and the
 * flush on shutdown.
 */
import { describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from './support/app-process';
import { concurrently, get } from './support/http';
import { useReceiverAndApps } from './support/receiver-and-apps';
import { awaitServerSpan, costOf, tracedGet } from './support/traced-request';
import { spawnSync } from 'node:child_process';
import { repoRoot } from './support/paths';

const MiB = 1024 * 1024;
const { receiver, apps } = useReceiverAndApps();

async function launch(options: Parameters<typeof startApp>[0]): Promise<AppProcess> {
  const app = await startApp(options);
  apps.push(app);
  return app;
}

function otlpEnv(protocol: string): Record<string, string> {
  return { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: protocol, OTEL_BSP_SCHEDULE_DELAY: '50' };
}

describe('with nothing configured', () => {
  it('prints one summary line per request on stderr and exports nothing', async () => {
    const app = await launch({ script: 'test/fixtures/cost-app.js', env: { OTEL_EXPORTER_OTLP_ENDPOINT: undefined, OTEL_TRACES_EXPORTER: undefined } });
    expect((await get(`${app.url}/queries/2`)).status).toBe(200);
    const [line] = await app.waitForLine(/request-budget: GET \/queries\/:n .*/, 10_000, 'stderr');
    // bytes: two DataRow messages of one 1-character int4, 1 + 4 + 2 + 4 + 1 bytes each.
    expect(line).toMatch(
      /^request-budget: GET \/queries\/:n 200 \d+\.\dms queries=2 db=\d+\.\dms rows=2 bytes=24B heap=[+-][\d.]+(B|KiB|MiB)\((high|medium|low)\)( mem=[\d.]+(B|KiB|MiB)(\(route [\d.]+(B|KiB|MiB)±[\d.]+(B|KiB|MiB)\))?)? http=0 repeated=2×"SELECT \$1::int AS i"$/,
    );
    expect((await get(`${app.url}/fetch`)).status).toBe(200);
    await app.waitForLine(/request-budget: GET \/fetch 200 .* http=1 untimed=1$/, 10_000, 'stderr');
    expect(receiver.spans).toHaveLength(0);
    expect(app.stderrLines.filter((l) => l.startsWith('request-budget:') && !/ \d+\.\dms queries=/.test(l))).toEqual([
      'request-budget: no trace exporter configured (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT): printing one summary line per request on stderr',
    ]);
  });
});

describe('exporters', () => {
  it('exports the same cost record over OTLP/HTTP JSON', async () => {
    const app = await launch({ script: 'test/fixtures/cost-app.js', env: otlpEnv('http/json') });
    const { server } = await costOf(receiver, `${app.url}/n-plus-one/5`);
    expect(server.encoding).toBe('json');
    expect(server.attributes['cost.db.queries']).toBe(6);
    expect(server.attributeTypes['cost.db.queries']).toBe('int');
    expect(server.attributes['cost.db.repeated_count']).toBe(5);
    expect(server.attributes['cost.db.rows']).toBe(10);
  });

  it('instruments an ES module app started with --import', async () => {
    const app = await launch({
      script: 'test/fixtures/esm-app.mjs',
      requireRegister: false,
      nodeArgs: ['--import', '@request-budget/node/register'],
      env: otlpEnv('http/protobuf'),
    });
    const { server } = await costOf(receiver, `${app.url}/queries/4`);
    expect(server.attributes['http.route']).toBe('/queries/:n');
    expect(server.attributes['cost.db.queries']).toBe(4);
    expect(server.attributes['cost.db.repeated_statement']).toBe('SELECT $1::int AS i');
  });

  it('flushes spans still waiting in the batch when the process gets SIGTERM', async () => {
    const app = await launch({ script: 'test/fixtures/plain-app.js', env: { ...otlpEnv('http/protobuf'), OTEL_BSP_SCHEDULE_DELAY: '60000' } });
    const request = await tracedGet(`${app.url}/`);
    expect(request.response.body).toBe('ok');
    expect(receiver.spans).toHaveLength(0);
    const stopped = app.stop('SIGTERM', 10_000);
    const { server } = await awaitServerSpan(receiver, request);
    expect(server.attributes['cost.db.queries']).toBe(0);
    // With no handler of its own, the app still ends by the signal, as it would have without us.
    expect(await stopped).toBeNull();
    expect((await app.exited).signal).toBe('SIGTERM');
  });
});

describe('span attribute limits', () => {
  it('OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=10 no longer drops the cost record: raised by its room, said once', async () => {
    const app = await launch({ script: 'test/fixtures/cost-app.js', env: { ...otlpEnv('http/protobuf'), OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '10' } });
    const { server } = await costOf(receiver, `${app.url}/n-plus-one/5`);
    expect([server.attributes['cost.db.queries'], server.attributes['cost.db.repeated_count'], server.attributes['cost.db.rows']]).toEqual([6, 5, 10]);
    expect(app.stderrLines.filter((line) => line.includes('attribute count limit'))).toEqual([
      "request-budget: span attribute count limit 10 raised to 42, so the cost record (up to 32 attributes on a request's span) is not dropped",
    ]);
  });
});

describe('span attribute limits in an app of its own NodeSDK', () => {
  it('requestBudgetComponents() carries the raised limit into the NodeSDK options it is spread into', () => {
    const script =
      "const { requestBudgetComponents } = require('@request-budget/node'); const c = requestBudgetComponents({ instrumentations: [], traceExporters: [] }); process.stdout.write(JSON.stringify(c.spanLimits ?? null));";
    const run = (env: Record<string, string>) =>
      spawnSync(process.execPath, ['-e', script], { cwd: repoRoot, env: { ...process.env, ...env }, encoding: 'utf8' });
    const limited = run({ OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '10' });
    expect(JSON.parse(limited.stdout)).toEqual({ attributeCountLimit: 42 });
    expect(limited.stderr).toContain('request-budget: span attribute count limit 10 raised to 42');
    expect(JSON.parse(run({}).stdout)).toBeNull();
  });
});

describe('stopping', () => {
  it('leaves an app’s own SIGTERM drain alone and still exports what it served meanwhile', async () => {
    const app = await launch({ script: 'test/fixtures/drain-app.js', env: { ...otlpEnv('http/protobuf'), OTEL_BSP_SCHEDULE_DELAY: '60000' } });
    app.child.kill('SIGTERM');
    await app.waitForLine(/^draining$/, 5000, 'stdout');
    const duringDrain = await tracedGet(`${app.url}/during-drain`);
    expect(duringDrain.response.body).toBe('ok');
    // The app exits by itself once its loop runs dry: code 0, not killed by a re-raised signal.
    expect(await app.exited).toEqual({ code: 0, signal: null });
    const { server } = await awaitServerSpan(receiver, duringDrain);
    expect(server.attributes['url.path']).toBe('/during-drain');
  });
});

describe('bad environment values', () => {
  it('start the app anyway, with one clear line per problem, and fall back to defaults', async () => {
    const app = await launch({
      script: 'test/fixtures/cost-app.js',
      env: {
        OTEL_TRACES_EXPORTER: 'jaeger',
        OTEL_TRACES_SAMPLER: 'traceidratio',
        OTEL_TRACES_SAMPLER_ARG: 'ten percent',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'carrier-pigeon',
        REQUEST_BUDGET_SUMMARY: 'yes please',
      },
    });
    expect((await get(`${app.url}/queries/2`)).status).toBe(200);
    await app.waitForLine(/request-budget: GET \/queries\/:n 200 .* queries=2 /, 10_000, 'stderr');
    const diagnostics = app.stderrLines.filter((line) => line.startsWith('request-budget:') && !line.includes(' queries='));
    expect(diagnostics).toEqual([
      'request-budget: OTEL_TRACES_EXPORTER="jaeger": unknown "jaeger" (expected otlp, zipkin, console, none); ignoring it',
      'request-budget: OTEL_EXPORTER_OTLP_PROTOCOL="carrier-pigeon" is not one of http/protobuf, http/json, grpc; ignoring it',
      'request-budget: REQUEST_BUDGET_SUMMARY="yes please" is not a boolean (expected true or false); ignoring it',
      'request-budget: OTEL_TRACES_SAMPLER_ARG="ten percent" is not a number from 0 to 1; ignoring it',
      'request-budget: no trace exporter configured (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT): printing one summary line per request on stderr',
    ]);
  });

  it('OTEL_SDK_DISABLED=true leaves the app uninstrumented', async () => {
    const app = await launch({
      script: 'test/fixtures/cost-app.js',
      env: { ...otlpEnv('http/protobuf'), OTEL_SDK_DISABLED: 'true', REQUEST_BUDGET_SUMMARY: 'true' },
    });
    expect((await get(`${app.url}/queries/2`)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(receiver.spans).toHaveLength(0);
    expect(app.stderrLines.filter((line) => line.startsWith('request-budget:'))).toEqual([]);
  });
});

describe('heap figures', () => {
  it('shows a request retaining 8 MiB, run alone, as a delta of 8 MiB within 1 MiB', async () => {
    const app = await launch({ script: 'test/fixtures/cost-app.js', env: otlpEnv('http/protobuf') });
    await costOf(receiver, `${app.url}/retain/1`); // first-request warm-up (lazy code, JIT)
    const deltas: number[] = [];
    for (let run = 0; run < 5; run += 1) {
      const { server } = await costOf(receiver, `${app.url}/retain/8`);
      expect(server.attributes['cost.heap.in_flight']).toBe(1);
      expect(['high', 'medium']).toContain(server.attributes['cost.heap.confidence']);
      deltas.push(Number(server.attributes['cost.heap.delta_bytes']));
    }
    const median = deltas.sort((a, b) => a - b)[2];
    expect(Math.abs(median - 8 * MiB), `deltas ${deltas.map((d) => (d / MiB).toFixed(2)).join(', ')} MiB`).toBeLessThan(1 * MiB);
  });

  it('marks requests that overlapped others with their in-flight count and low confidence', async () => {
    const app = await launch({ script: 'test/fixtures/cost-app.js', env: otlpEnv('http/protobuf') });
    // The barrier route holds all ten until the tenth arrives: each overlapped all the others.
    const started = await concurrently(10, () => tracedGet(`${app.url}/barrier/overlap/10`));
    const servers = await Promise.all(started.map(async (request) => (await awaitServerSpan(receiver, request)).server));
    for (const server of servers) {
      expect(server.attributes['cost.heap.in_flight']).toBe(10);
      expect(server.attributes['cost.heap.confidence']).toBe('low');
      expect(server.attributes['cost.db.queries']).toBe(1);
    }
    // Alone again afterwards.
    const { server: alone } = await costOf(receiver, `${app.url}/queries/1`);
    expect(alone.attributes['cost.heap.in_flight']).toBe(1);
  });
});
