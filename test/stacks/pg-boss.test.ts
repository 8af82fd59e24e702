/**
 * pg-boss, end to end with no request-budget code in the app (test/fixtures/stacks/
 * pg-boss-worker.js): each handler call is a job root of its own (pg-boss's `process` span),
 * named after its queue and judged by the `jobs` rules of queue-budgets.yaml; pg-boss's own
 * bookkeeping (fetching, completing, failing, retrying, maintenance) is charged to no job and no
 * request; the request that sent the jobs counts them as enqueued and keeps its own statements.
 *
 * Two roles keep the truth apart in pg_stat_statements: the handlers and the request run as
 * `rb_pgboss` on the app's pool of 2 (with a background query loop beside them), pg-boss runs as
 * `rb_pgboss_queue` on its own pool. Checked under `--require` (pg-boss require()d: an ES module,
 * Node 22.12+), under `--import` with the app importing it, and with pg-boss's own telemetry off
 * (request-budget then opens the job roots and the enqueue spans itself); a worker started from
 * inside a request leaves that request alone. An ES module app under `--require` cannot be
 * patched: that is said once, with the fix.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess, type StartAppOptions } from '../support/app-process';
import { pgTruth, type PgTruth, type ServerDelta } from '../support/db-truth';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { OtlpSpanKind } from '../support/received-span';
import {
  addCalls,
  awaitJobRoots,
  callsWithoutBackground,
  createJobsTable,
  enqueue,
  expectedJob,
  jobSpecs,
  JOB_NAME,
  queriesUnder,
  recordOf,
  requestStatements,
  sortedCalls,
  statementsOf,
  type EnqueueResult,
  type JobSpec,
} from './queue-jobs';

const APP_ROLE = 'rb_pgboss';
const BOSS_ROLE = 'rb_pgboss_queue';
const TABLE = 'rbpb_jobs';
const SCHEMA = 'rbpb_boss';
const START_TIMEOUT_MS = 40_000;

let receiver: OtlpReceiver;
let truth: PgTruth;
let bossTruth: PgTruth;

beforeAll(async () => {
  [receiver, truth, bossTruth] = await Promise.all([startOtlpReceiver(), pgTruth(APP_ROLE), pgTruth(BOSS_ROLE)]);
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
  await admin.connect();
  await createJobsTable(admin, TABLE).finally(() => admin.end());
});

afterAll(async () => {
  await Promise.all([truth?.close(), bossTruth?.close(), receiver?.close()]);
});

function startBossApp(script: string, extra: Partial<StartAppOptions> & { env?: Record<string, string> } = {}): Promise<AppProcess> {
  return startApp({
    script,
    ...extra,
    env: {
      OTEL_SERVICE_NAME: 'pg-boss-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      OTEL_BSP_MAX_QUEUE_SIZE: '20000',
      DATABASE_URL: truth.url,
      BOSS_URL: bossTruth.url,
      BOSS_SCHEMA: SCHEMA,
      JOBS_TABLE: TABLE,
      PG_POOL_MAX: '2',
      CONCURRENCY: '4',
      BACKGROUND_INTERVAL_MS: '3',
      REQUEST_BUDGET_FILE: 'test/fixtures/stacks/queue-budgets.yaml',
      ...extra.env,
    },
    timeoutMs: START_TIMEOUT_MS,
  });
}

const withIds = (jobs: JobSpec[]): JobSpec[] => jobs.map((job) => ({ ...job, uuid: randomUUID() }));

interface Run {
  readonly request: EnqueueResult;
  readonly roots: ReceivedSpan[];
  readonly delta: ServerDelta;
  readonly bossDelta: ServerDelta;
  readonly spans: readonly ReceivedSpan[];
}

/** Sends the jobs in one request and waits for `roots` job roots; with what each role ran meanwhile. */
async function run(app: AppProcess, jobs: JobSpec[], waitFor: number, roots = jobs.length): Promise<Run> {
  receiver.clear();
  let request: EnqueueResult | undefined;
  let received: ReceivedSpan[] = [];
  let delta: ServerDelta | undefined;
  const bossDelta = await bossTruth.during(async () => {
    delta = await truth.during(async () => {
      request = await enqueue(receiver, app.url, jobs, waitFor);
      received = await awaitJobRoots(receiver, 'rbpb.', roots);
    });
  });
  return { request: request!, roots: received, delta: delta!, bossDelta, spans: receiver.spans };
}

const messageId = (root: ReceivedSpan) => String(root.attributes['messaging.message.id']);
const queriesOf = (root: ReceivedSpan) => root.attributes['cost.db.queries'] as number;

/** Every job's record exact and judged; the request's own; the server's count, statement by statement. */
function expectExactRecords({ request, roots, delta, spans }: Run, jobs: JobSpec[]): void {
  expect(roots).toHaveLength(jobs.length);
  const byId = new Map(roots.map((root) => [messageId(root), root]));
  for (const job of jobs) {
    const root = byId.get(job.uuid!)!;
    expect(root, `job ${job.id}`).toBeDefined();
    expect(root.kind).toBe(OtlpSpanKind.CONSUMER);
    expect(root.attributes[JOB_NAME]).toBe(job.queue);
    expect(root.attributes['request_budget.job.attempt']).toBe(1);
    const expected = expectedJob(job, 'rbpb', TABLE);
    expect({ id: job.id, ...recordOf(root) }).toEqual({ id: job.id, ...expected });
    expect(root.attributes['budget.breached']).toBe(expected.violations.length > 0);
    expect(root.status.code).toBe(0);
    expect(queriesUnder(spans, root)).toHaveLength(job.n);
  }
  const server = request.server;
  expect(server.attributes['cost.db.queries']).toBe(2);
  expect(server.attributes['cost.jobs.enqueued']).toBe(jobs.length);
  const sends = request.trace.filter((s) => s.kind === OtlpSpanKind.PRODUCER && s.parentSpanId === server.spanId);
  expect(sends).toHaveLength(jobs.length);
  expect(sends.every((s) => s.attributes['messaging.system'] === 'pg-boss')).toBe(true);

  const expectedCalls = addCalls(statementsOf(jobs, TABLE), requestStatements(TABLE));
  expect(sortedCalls(callsWithoutBackground(delta))).toEqual(sortedCalls(expectedCalls));
  const recorded = roots.reduce((sum, root) => sum + queriesOf(root), 0) + (server.attributes['cost.db.queries'] as number);
  expect(recorded).toBe([...expectedCalls.values()].reduce((a, b) => a + b, 0));
  // No other cost record: pg-boss's polling and maintenance queries (traced by instrumentation-pg,
  // outside any span) are roots of nothing, and every message span is a named job.
  expect(spans.filter((s) => s.attributes['cost.db.queries'] !== undefined)).toHaveLength(jobs.length + 1);
  expect(spans.filter((s) => s.kind === OtlpSpanKind.CONSUMER && s.attributes[JOB_NAME] === undefined)).toEqual([]);
  expect(spans.some((s) => s.parentSpanId === '' && String(s.attributes['db.query.text'] ?? '').includes(SCHEMA))).toBe(true);
}

describe('under --require (pg-boss require()d), pg-boss telemetry on', () => {
  let app: AppProcess;
  beforeAll(async () => {
    app = await startBossApp('test/fixtures/stacks/pg-boss-app.js');
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('40 jobs, 4 workers per queue on a pool of 2: every record exact, judged by its rule; pg-boss bookkeeping charged to nothing', async () => {
    const jobs = withIds(jobSpecs(['rbpb.email', 'rbpb.report'], 40));
    const result = await run(app, jobs, 10);
    expectExactRecords(result, jobs);
    const breached = jobs.filter((job) => expectedJob(job, 'rbpb', TABLE).violations.length > 0);
    expect(breached.length).toBeGreaterThan(5);
    expect(breached.length).toBeLessThan(35);

    // pg-boss ran its own statements as its own role (40 inserts, fetches, 40 completions, …),
    // and they are in every job's trace: each job root has pg-boss's `complete` span as a child,
    // with its query beneath. Yet no record counted them (the records above are exact).
    expect(result.bossDelta.statements).toBeGreaterThanOrEqual(80);
    for (const root of result.roots) {
      const complete = result.spans.filter((s) => s.parentSpanId === root.spanId && s.name === `complete ${root.attributes[JOB_NAME]}`);
      expect(complete, `complete span of ${messageId(root)}`).toHaveLength(1);
      expect(complete[0]!.kind).toBe(OtlpSpanKind.CLIENT);
      expect(result.spans.some((s) => s.parentSpanId === complete[0]!.spanId && typeof s.attributes['db.query.text'] === 'string')).toBe(true);
    }
    // The send INSERTs ran under the request's PRODUCER spans, as the enqueue, not as its queries.
  });

  it("a batch of five jobs per handler call is one root, named after the queue, with all five jobs' statements", async () => {
    const jobs = withIds(Array.from({ length: 10 }, (_, i): JobSpec => ({ id: 200 + i, queue: 'rbpb.batch', n: 2, plusOne: false })));
    const { request, roots, delta } = await run(app, jobs, 10, 2);
    expect(roots).toHaveLength(2);
    for (const root of roots) {
      expect(root.attributes[JOB_NAME]).toBe('rbpb.batch');
      expect(root.attributes['messaging.batch.message_count']).toBe(5);
      expect(root.attributes['request_budget.job.attempt']).toBeUndefined();
      expect(recordOf(root)).toEqual({
        queries: 10,
        rows: 10,
        repeated: 5,
        statement: `SELECT a FROM ${TABLE} WHERE id = $1`,
        rule: 'rbpb.*',
        violations: ['db.queries 10>5', 'db.repeated_count 5>3'],
      });
    }
    // One insert() of ten jobs: one PRODUCER span, ten enqueued.
    expect(request.server.attributes['cost.jobs.enqueued']).toBe(10);
    expect(request.server.attributes['cost.db.queries']).toBe(2);
    const expectedCalls = addCalls(statementsOf(jobs, TABLE), requestStatements(TABLE));
    expect(sortedCalls(callsWithoutBackground(delta))).toEqual(sortedCalls(expectedCalls));
  });

  it('a job that throws mid-job: each attempt a root with an error status and its own statements; nothing left for the next jobs', async () => {
    const failing: JobSpec[] = withIds([
      { id: 300, queue: 'rbpb.email', n: 2, plusOne: false, fail: true },
      { id: 301, queue: 'rbpb.report', n: 3, plusOne: true, fail: true },
    ]);
    const after = withIds(jobSpecs(['rbpb.email', 'rbpb.report'], 8, 310));
    const jobs = [...failing, ...after];
    // retryLimit 1: the failing ones run twice.
    const { roots, delta } = await run(app, jobs, 0, jobs.length + failing.length);
    for (const job of failing) {
      const attempts = roots
        .filter((root) => messageId(root) === job.uuid)
        .sort((a, b) => Number(a.attributes['request_budget.job.attempt']) - Number(b.attributes['request_budget.job.attempt']));
      expect(attempts.map((root) => root.attributes['request_budget.job.attempt'])).toEqual([1, 2]);
      for (const root of attempts) {
        expect(queriesOf(root)).toBe(job.n);
        expect(root.status).toEqual({ code: 2, message: `job ${job.id} failed on purpose` });
        expect(root.events.some((e) => e.name === 'exception')).toBe(true);
      }
    }
    for (const job of after) {
      const root = roots.find((r) => messageId(r) === job.uuid)!;
      expect({ id: job.id, ...recordOf(root) }).toEqual({ id: job.id, ...expectedJob(job, 'rbpb', TABLE) });
      expect(root.status.code).toBe(0);
    }
    const expectedCalls = addCalls(statementsOf([...jobs, ...failing], TABLE), requestStatements(TABLE));
    expect(sortedCalls(callsWithoutBackground(delta))).toEqual(sortedCalls(expectedCalls));
  });

  it("work() called in a request: the worker's polling never joins the request's trace", async () => {
    receiver.clear();
    const traceId = randomUUID().replaceAll('-', '');
    const response = await fetch(`${app.url}/work-in-request`, { method: 'POST', headers: { traceparent: `00-${traceId}-${'1'.repeat(16)}-01` } });
    expect(response.status).toBe(200);
    const [server] = await receiver
      .waitFor((all) => all.some((s) => s.traceId === traceId && s.kind === OtlpSpanKind.SERVER))
      .then((all) => all.filter((s) => s.traceId === traceId && s.kind === OtlpSpanKind.SERVER));
    // Three polls of the new worker later, the request's trace has gained nothing after its end.
    await new Promise((resolve) => setTimeout(resolve, 1600));
    const polls = receiver.spans.filter((s) => String(s.attributes['db.query.text'] ?? '').includes(SCHEMA) && s.startTimeUnixNano > server!.endTimeUnixNano);
    expect(polls.length).toBeGreaterThan(0);
    expect(receiver.spans.filter((s) => s.traceId === traceId && s.startTimeUnixNano > server!.endTimeUnixNano)).toEqual([]);
    expect(server!.attributes['cost.db.queries']).toBeGreaterThan(0); // createQueue(), in the request
  });
});

describe('under --import, the app importing pg-boss', () => {
  let app: AppProcess;
  beforeAll(async () => {
    app = await startBossApp('test/fixtures/stacks/pg-boss-esm-app.mjs', { requireRegister: false, nodeArgs: ['--import', '@request-budget/node/register'] });
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('12 jobs: every record exact, pg-boss bookkeeping charged to nothing', async () => {
    const jobs = withIds(jobSpecs(['rbpb.email', 'rbpb.report'], 12, 400));
    expectExactRecords(await run(app, jobs, 4), jobs);
    // Its telemetry module was patched through the ES module hook: nothing to report.
    expect(app.stderrLines.filter((line) => line.startsWith('request-budget:'))).toEqual([]);
  });
});

describe('an ES module app under --require: pg-boss cannot be patched, and says so once', () => {
  let app: AppProcess;
  beforeAll(async () => {
    app = await startBossApp('test/fixtures/stacks/pg-boss-esm-app.mjs');
  });
  afterAll(async () => {
    await app?.stop();
  });

  it("its jobs are pg-boss's own roots, with its completion query: one line names the cause and the fix", async () => {
    const jobs = withIds(jobSpecs(['rbpb.email'], 3, 600));
    receiver.clear();
    await enqueue(receiver, app.url, jobs, 3);
    const spans = await receiver.waitFor((all) => all.filter((s) => s.kind === OtlpSpanKind.CONSUMER && s.scope === 'pg-boss').length >= 3);
    const roots = spans.filter((s) => s.kind === OtlpSpanKind.CONSUMER && s.scope === 'pg-boss');
    for (const root of roots) {
      const job = jobs.find((j) => j.uuid === messageId(root))!;
      expect(root.attributes[JOB_NAME]).toBeUndefined();
      expect(queriesOf(root)).toBe(job.n + 1); // pg-boss's `complete`, charged: the reason for the line
    }
    const lines = app.stderrLines.filter((line) => line.startsWith('request-budget:'));
    expect(lines).toEqual([
      "request-budget: pg-boss runs jobs request-budget's pg-boss instrumentation never patched (pg-boss imported as an ES module under --require, or loaded before request-budget started): their cost records (pg-boss's own `process <queue>` spans) also count pg-boss's own completion queries; fix: start the app with `node --import @request-budget/node/register`",
    ]);
  });
});

describe("pg-boss's own telemetry off (openTelemetry: { enabled: false })", () => {
  let app: AppProcess;
  beforeAll(async () => {
    app = await startBossApp('test/fixtures/stacks/pg-boss-app.js', { env: { PG_BOSS_TELEMETRY: 'off' } });
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('12 jobs: request-budget opens each job root and each enqueue span itself; every record exact', async () => {
    const jobs = withIds(jobSpecs(['rbpb.email', 'rbpb.report'], 12, 500));
    const result = await run(app, jobs, 4);
    expectExactRecords(result, jobs);
    for (const root of result.roots) {
      expect(root.scope).toBe('@request-budget/node');
      expect(root.name).toBe(`job ${root.attributes[JOB_NAME]}`);
      expect(root.attributes['messaging.system']).toBe('pg-boss');
    }
  });
});

describe('library coverage', () => {
  /** The `request-budget:` lines of an app that only loads pg-boss, run to its end. */
  async function diagnostics(env: Record<string, string | undefined>): Promise<string[]> {
    const app = await startApp({
      script: 'test/fixtures/library-coverage/load-libraries-app.js',
      env: { OTEL_TRACES_EXPORTER: 'none', REQUEST_BUDGET_SUMMARY: 'false', OTEL_NODE_ENABLED_INSTRUMENTATIONS: undefined, LOAD: 'pg-boss', ...env },
      timeoutMs: START_TIMEOUT_MS,
    });
    await app.stop();
    return app.stderrLines.filter((line) => line.startsWith('request-budget:'));
  }

  it('says nothing when pg-boss is instrumented, and one line with the fix when its instrumentation is off', async () => {
    expect(await diagnostics({ OTEL_NODE_DISABLED_INSTRUMENTATIONS: undefined })).toEqual([]);
    expect(await diagnostics({ OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'pg-boss' })).toEqual([
      'request-budget: pg-boss 12.38.1 is loaded, but OTEL_NODE_DISABLED_INSTRUMENTATIONS turns off its instrumentation "pg-boss", so its jobs get no cost record; fix: remove pg-boss from OTEL_NODE_DISABLED_INSTRUMENTATIONS',
    ]);
  });
});
