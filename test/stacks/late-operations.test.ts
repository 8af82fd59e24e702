/**
 * Queries that end after their request's response are in no cost record (it was written when the
 * response ended), but they do not vanish: each is counted per route in
 * `request_budget_late_operations_total{service,route,kind}`, and the summary prints a `late:` line, at
 * most one per route every 10 s, the rest summed into the next one (or the last, at shutdown).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { pgTruth, type PgTruth } from '../support/db-truth';
import { freePort } from '../support/free-port';
import { get } from '../support/http';

let app: AppProcess;
let truth: PgTruth;
let metricsUrl: string;

beforeAll(async () => {
  truth = await pgTruth('rb_late_operations');
  const port = await freePort();
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
  app = await startApp({
    script: 'test/fixtures/cost-app.js',
    timeoutMs: 30_000, // slow starts on a busy machine are not what this tests
    env: {
      OTEL_SERVICE_NAME: 'late-app',
      OTEL_TRACES_EXPORTER: 'none',
      REQUEST_BUDGET_SUMMARY: 'true',
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(port),
      DATABASE_URL: truth.url,
      PG_POOL_MAX: '3',
      // Queries outside any request all along: they are nobody's, so never late.
      BACKGROUND_INTERVAL_MS: '3',
    },
  });
});

afterAll(async () => {
  await app?.stop();
  await truth?.close();
});

/** `request_budget_late_operations_total` samples: labels without the scope, and the value. */
async function lateCounts(): Promise<Record<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const counts: Record<string, number> = {};
  for (const [, labels, value] of text.matchAll(/^request_budget_late_operations_total\{(.*)\} (\S+)$/gm)) {
    counts[labels!.replace(/,?otel_scope_[a-z_]+="[^"]*"/g, '')] = Number(value);
  }
  return counts;
}

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const lateLines = () => app.stderrLines.filter((line) => line.startsWith('request-budget: late:'));

it('counts a query made after the response per route, and says so once per interval', async () => {
  const before = await truth.snapshot();
  // Requests whose queries all end in time: nothing late.
  expect((await get(`${app.url}/queries/3`)).status).toBe(200);
  expect((await get(`${app.url}/after-response`)).status).toBe(200);
  await app.waitForLine(/^request-budget: late:/, 5000, 'stderr');
  expect(await until(lateCounts, (c) => Object.keys(c).length > 0)).toEqual({ 'service="late-app",route="GET /after-response",kind="db"': 1 });
  expect(lateLines()).toEqual(['request-budget: late: GET /after-response +1 query after the response (SELECT ? AS late)']);
  // The request's own summary line: it made no query before responding.
  expect(app.stderrLines.filter((l) => l.startsWith('request-budget: GET /after-response '))).toEqual([expect.stringMatching(/ queries=0 /)]);

  // Three more within the interval: counted at once, written together later.
  for (let i = 0; i < 3; i += 1) expect((await get(`${app.url}/after-response`)).status).toBe(200);
  expect(await until(lateCounts, (c) => c['service="late-app",route="GET /after-response",kind="db"'] === 4)).toEqual({
    'service="late-app",route="GET /after-response",kind="db"': 4,
  });
  // What PostgreSQL ran meanwhile: the four late queries (the counter counts ended spans, so by now they ran).
  const after = await truth.snapshot();
  const late = [...after].filter(([text]) => text.includes('AS late')).map(([text, now]) => [text, now.calls - (before.get(text)?.calls ?? 0)]);
  expect(late).toEqual([['SELECT $1 AS late', 4]]);
  await new Promise((resolve) => setTimeout(resolve, 300)); // past the summary's 100 ms flush
  expect(lateLines()).toHaveLength(1);

  // Shutdown writes what the interval held back.
  await app.stop();
  expect(lateLines()).toEqual([
    'request-budget: late: GET /after-response +1 query after the response (SELECT ? AS late)',
    expect.stringMatching(/^request-budget: late: GET \/after-response \+3 queries after the response in the last \ds \(SELECT \? AS late\)$/),
  ]);
});
