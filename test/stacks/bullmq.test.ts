/**
 * BullMQ 6 jobs with zero code, end to end: test/fixtures/stacks/bullmq-app.js under
 * `--require @request-budget/node/register` serves requests that enqueue jobs and, in the same
 * process, runs a Worker (concurrency 4) whose jobs query PostgreSQL through a pool of 2
 * connections beside a background query loop. Each job's cost record is held against what the
 * servers ran: pg_stat_statements for the app's role (rb_bullmq) and Redis MONITOR on the app's
 * database (11), which BullMQ's own bookkeeping shares with the processor's commands.
 *
 * What counts for a job: the statements and commands its processor runs, nothing else: not
 * BullMQ's scripts that fetch, lock and complete it, not the request that enqueued it, not the
 * job beside it. What counts for the request: its own statements, and the jobs it enqueued as
 * `cost.jobs.enqueued` (BullMQ's script that stores them is BullMQ's work, not a query).
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { pgTruth, redisTruth, type PgTruth, type RedisTruth, type ServerDelta } from '../support/db-truth';
import { freePort } from '../support/free-port';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { OtlpSpanKind } from '../support/received-span';
import { awaitServerSpan, tracedGet, type TracedRequest } from '../support/traced-request';

const DB = 11;
const QUEUE = 'rbbq-email';
const CRASH_QUEUE = 'rbbq-crash';
const SANDBOX_QUEUE = 'rbbq-sandbox';
const OTEL_QUEUE = 'rbbq-otel';
const SANDBOXED_STATEMENT = 'SELECT $1::int AS sandboxed, $2::int AS step';
// The processor's statements (see the fixture): one row each.
const STATEMENTS = [
  'SELECT $1::int AS job',
  'SELECT md5($1::text) AS digest',
  'SELECT abs($1::int) AS magnitude',
  'SELECT upper($1::text) AS shout',
  'SELECT length($1::text) AS size',
  'SELECT sign($1::int) AS sign',
];
const LIST = 'SELECT $1::int AS job, $2::text AS list';
const ITEM = 'SELECT $1::int AS job, $2::int AS item';
const REQUEST_STATEMENTS = ['SELECT $1::text || $2::text AS enqueue_request', 'SELECT $1::int * $2::int AS enqueued'];
const BACKGROUND = 'SELECT $1::text AS background';

/** One job of the plan: what its processor runs. */
interface PlannedJob {
  run: number;
  index: number;
  name: 'send' | 'digest';
  queries: number;
  nPlusOne: boolean;
  redis: number;
  failOnFirstAttempt?: number;
  hangOnFirstAttempt?: number;
}

// A run id in every job, so no two runs (or jobs) share a Redis key.
const run = Date.now() % 1_000_000_000;

/** 40 jobs: 0–6 queries each (an N+1 every third job), 0–3 Redis commands, every fifth a digest. */
const PLAN: PlannedJob[] = Array.from({ length: 40 }, (_, index) => {
  const queries = index % 7;
  return { run, index, name: index % 5 === 4 ? 'digest' : 'send', queries, nPlusOne: index % 3 === 0 && queries >= 2, redis: index % 4 };
});

/** The cost record the job's processor makes, and its judgement under bullmq-budgets.yaml. */
function expectedRecord(job: PlannedJob) {
  const counts = job.nPlusOne ? [1, job.queries - 1] : Array.from({ length: job.queries }, () => 1);
  const repeated = Math.max(0, ...counts, job.redis);
  const queries = job.queries + job.redis;
  const violations: string[] = [];
  if (job.name === 'digest') {
    if (queries > 4) violations.push(`db.queries ${queries}>4`);
  } else {
    if (queries > 6) violations.push(`db.queries ${queries}>6`);
    if (repeated > 3) violations.push(`db.repeated_count ${repeated}>3`);
  }
  return {
    'request_budget.job.name': `${QUEUE}.${job.name}`,
    'cost.db.queries': queries,
    'cost.db.rows': job.queries,
    'cost.db.repeated_count': repeated,
    'cost.jobs.enqueued': 0,
    'budget.rule': job.name === 'digest' ? 'rbbq-email.digest' : 'rbbq-email.*',
    'budget.breached': violations.length > 0,
    violations,
  };
}

let receiver: OtlpReceiver;
let app: AppProcess;
let pg: PgTruth;
let redis: RedisTruth;
let metricsPort: number;

const appEnv = (extra: Record<string, string>) => ({
  OTEL_SERVICE_NAME: 'bullmq-app',
  OTEL_TRACES_EXPORTER: 'otlp',
  OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
  OTEL_BSP_SCHEDULE_DELAY: '50',
  DATABASE_URL: pg.url,
  REDIS_DB: String(DB),
  PG_POOL_MAX: '2',
  REQUEST_BUDGET_FILE: 'test/fixtures/stacks/bullmq-budgets.yaml',
  REQUEST_BUDGET_SUMMARY: 'true',
  ...extra,
});

/** FLUSHDB on the test's own database: no job of an earlier run is left to process. */
async function flushTestDb(): Promise<void> {
  const socket = net.connect(6379, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  await new Promise<void>((resolve, reject) => {
    let reply = '';
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if ((reply.match(/\r\n/g) ?? []).length >= 2) reply.includes('-ERR') ? reject(new Error(reply)) : resolve();
    });
    socket.write(`SELECT ${DB}\r\nFLUSHDB\r\n`);
  });
  socket.destroy();
}

beforeAll(async () => {
  [receiver, pg, redis, metricsPort] = await Promise.all([startOtlpReceiver(), pgTruth('rb_bullmq'), redisTruth(DB), freePort(), flushTestDb()]);
  app = await startApp({
    script: 'test/fixtures/stacks/bullmq-app.js',
    timeoutMs: 30_000,
    env: appEnv({
      WORKER_QUEUES: QUEUE,
      WORKER_CONCURRENCY: '4',
      BACKGROUND_INTERVAL_MS: '3',
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(metricsPort),
    }),
  });
});

afterAll(async () => {
  await app?.stop();
  await Promise.all([receiver?.close(), pg?.close(), redis?.close()]);
});

const encode = (jobs: PlannedJob[]) => Buffer.from(JSON.stringify(jobs)).toString('base64url');
const enqueueUrl = (target: AppProcess, jobs: PlannedJob[], how: 'add' | 'bulk' | 'flow', queue = QUEUE, opts?: object) =>
  `${target.url}/enqueue?queue=${queue}&how=${how}&jobs=${encode(jobs)}${opts === undefined ? '' : `&opts=${encodeURIComponent(JSON.stringify(opts))}`}`;

const isJobRoot = (span: ReceivedSpan) => span.kind === OtlpSpanKind.CONSUMER && typeof span.attributes['request_budget.job.name'] === 'string';
const jobRootsOf = (spans: readonly ReceivedSpan[], queue: string, ids: readonly string[]) =>
  spans.filter((s) => isJobRoot(s) && s.attributes['messaging.destination.name'] === queue && ids.includes(String(s.attributes['messaging.message.id'])));

/** Waits until every job of `ids` has a job root at the receiver, and returns them by id. */
async function jobRoots(queue: string, ids: readonly string[], perJob = 1, timeoutMs = 20_000): Promise<Map<string, ReceivedSpan[]>> {
  const spans = await receiver.waitFor((all) => jobRootsOf(all, queue, ids).length >= ids.length * perJob, { timeoutMs });
  const byId = new Map<string, ReceivedSpan[]>(ids.map((id) => [id, []]));
  for (const span of jobRootsOf(spans, queue, ids)) byId.get(String(span.attributes['messaging.message.id']))!.push(span);
  return byId;
}

const recordOf = (span: ReceivedSpan) => ({
  'request_budget.job.name': span.attributes['request_budget.job.name'],
  'cost.db.queries': span.attributes['cost.db.queries'],
  'cost.db.rows': span.attributes['cost.db.rows'],
  'cost.db.repeated_count': span.attributes['cost.db.repeated_count'],
  'cost.jobs.enqueued': span.attributes['cost.jobs.enqueued'],
  'budget.rule': span.attributes['budget.rule'],
  'budget.breached': span.attributes['budget.breached'],
  violations: span.attributes['budget.violations'] ?? [],
});

/**
 * A statement as pg_stat_statements tells it apart: without its column aliases. It keeps one
 * entry per structure, under the text first seen (perhaps in an earlier run, with other aliases).
 */
const structureOf = (text: string) => text.replace(/\s+AS\s+\w+/gi, '');
/** Executions per statement structure in a pg_stat_statements delta. */
function callsOf(delta: ServerDelta): Record<string, number> {
  const calls: Record<string, number> = {};
  for (const [text, entry] of delta.byStatement) calls[structureOf(text)] = (calls[structureOf(text)] ?? 0) + entry.calls;
  return calls;
}
const ofJob = (index: number) => (command: string[]) => command[1]?.startsWith(`rbbq:h:${run}:${index}:`) === true;

describe('40 jobs on a Worker of concurrency 4, a pool of 2, with background queries', () => {
  let requests: TracedRequest[] = [];
  let ids: string[][] = [];
  let roots: Map<string, ReceivedSpan[]>;
  let pgDelta: ServerDelta;
  let commands: string[][] = [];

  beforeAll(async () => {
    // Two requests at once: twenty jobs added one by one, twenty in one addBulk.
    commands = await redis.during(async () => {
      pgDelta = await pg.during(async () => {
        requests = await Promise.all([tracedGet(enqueueUrl(app, PLAN.slice(0, 20), 'add')), tracedGet(enqueueUrl(app, PLAN.slice(20), 'bulk'))]);
        for (const request of requests) expect(request.response.status, request.response.body).toBe(200);
        ids = requests.map((request) => (JSON.parse(request.response.body) as { ids: string[] }).ids);
        roots = await jobRoots(QUEUE, ids.flat());
        // Every job completed (the worker says so after BullMQ's bookkeeping of it).
        for (const id of ids.flat()) await app.waitForLine(new RegExp(`^completed ${QUEUE} ${id} `), 10_000, 'stdout');
      });
    });
  }, 60_000);

  it("gives every job exactly one root, with its processor's exact record, its rule and its breaches", () => {
    const plannedById = new Map(ids.flat().map((id, i) => [id, PLAN[i]!]));
    for (const [id, spans] of roots) {
      const job = plannedById.get(id)!;
      expect(spans, `job ${id}`).toHaveLength(1);
      const [span] = spans;
      expect({ index: job.index, ...recordOf(span!) }).toEqual({ index: job.index, ...expectedRecord(job) });
      expect(span!.attributes).toMatchObject({
        'messaging.system': 'bullmq',
        'messaging.destination.name': QUEUE,
        'request_budget.job.attempt': 1,
        'request_budget.root': true,
      });
      expect(span!.status.code, `job ${id}`).not.toBe(2);
      if (job.nPlusOne && job.queries - 1 > job.redis) expect(span!.attributes['cost.db.repeated_statement']).toBe(ITEM);
    }
    const breached = PLAN.filter((job) => expectedRecord(job).violations.length > 0);
    expect(breached.length).toBeGreaterThan(5);
    expect(breached.length).toBeLessThan(PLAN.length);
  });

  it("matches pg_stat_statements: every statement the processors ran, and the requests' own, nothing else", () => {
    const expected: Record<string, number> = {};
    const add = (text: string, calls: number) => {
      if (calls > 0) expected[structureOf(text)] = (expected[structureOf(text)] ?? 0) + calls;
    };
    for (const text of REQUEST_STATEMENTS) add(text, 2);
    for (const job of PLAN) {
      if (job.nPlusOne) {
        add(LIST, 1);
        add(ITEM, job.queries - 1);
      } else {
        for (let i = 0; i < job.queries; i += 1) add(STATEMENTS[i]!, 1);
      }
    }
    const { [structureOf(BACKGROUND)]: background, ...rest } = callsOf(pgDelta);
    expect(rest).toEqual(expected);
    expect(background).toBeGreaterThan(0);
    // Every statement a processor ran is in exactly one job's record.
    const charged = [...roots.values()].flat().reduce((sum, span) => sum + Number(span.attributes['cost.db.rows']), 0);
    expect(charged).toBe(PLAN.reduce((sum, job) => sum + job.queries, 0));
  });

  it("charges each job its processor's Redis commands as MONITOR saw them, and none of BullMQ's own", () => {
    const plannedById = new Map(ids.flat().map((id, i) => [id, PLAN[i]!]));
    let handlerCommands = 0;
    for (const [id, [span]] of roots) {
      const job = plannedById.get(id)!;
      const seen = commands.filter(ofJob(job.index));
      expect(
        seen.map((c) => c[0]),
        `job ${id}`,
      ).toEqual(Array.from({ length: job.redis }, () => 'get'));
      expect(Number(span!.attributes['cost.db.queries']) - job.queries, `job ${id}`).toBe(seen.length);
      handlerCommands += seen.length;
    }
    // BullMQ ran its scripts on the same database meanwhile (adding, fetching, locking, completing
    // the jobs): none of them is in any record.
    const bookkeeping = commands.filter((c) => !c[1]?.startsWith(`rbbq:h:${run}:`));
    expect(bookkeeping.filter((c) => c[0] === 'evalsha' || c[0] === 'eval').length).toBeGreaterThanOrEqual(2 * PLAN.length);
    expect(handlerCommands).toBe(PLAN.reduce((sum, job) => sum + job.redis, 0));
  });

  it('leaves each enqueuing request its own record, with cost.jobs.enqueued', async () => {
    for (const [i, request] of requests.entries()) {
      const { server, trace } = await awaitServerSpan(receiver, request);
      expect(server.attributes).toMatchObject({
        'http.route': '/enqueue',
        'cost.db.queries': 2,
        'cost.db.rows': 2,
        'cost.db.repeated_count': 1,
        'cost.jobs.enqueued': 20,
        'budget.breached': false,
      });
      const producers = trace.filter((s) => s.kind === OtlpSpanKind.PRODUCER && s.attributes['messaging.system'] === 'bullmq');
      if (i === 0) {
        expect(producers.map((s) => [s.name, s.attributes['messaging.message.id']])).toEqual(ids[0]!.map((id) => [`add ${QUEUE}`, id]));
      } else {
        expect(producers.map((s) => [s.name, s.attributes['messaging.batch.message_count']])).toEqual([[`addBulk ${QUEUE}`, 20]]);
      }
      // BullMQ's script that stored the jobs ran under each enqueue span: traced, not charged.
      const scripts = trace.filter((s) => s.attributes['db.system.name'] === 'redis' && producers.some((p) => p.spanId === s.parentSpanId));
      expect(scripts.length).toBeGreaterThanOrEqual(producers.length);
      // Each job's root continues the trace of the request that enqueued it, under its enqueue span.
      for (const id of ids[i]!) {
        const [root] = roots.get(id)!;
        expect(root!.traceId).toBe(request.traceId);
        expect(producers.map((p) => p.spanId)).toContain(root!.parentSpanId);
      }
    }
  });

  it('prints one summary line per job, with OVER BUDGET where it breached', async () => {
    const lines = (name: string) => app.stderrLines.filter((line) => line.startsWith(`request-budget: job ${QUEUE}.${name} ok `));
    await expect.poll(() => lines('send').length + lines('digest').length).toBe(PLAN.length);
    expect(lines('digest')).toHaveLength(PLAN.filter((job) => job.name === 'digest').length);
    const over = [...lines('send'), ...lines('digest')].filter((line) => line.includes(' OVER BUDGET ('));
    expect(over).toHaveLength(PLAN.filter((job) => expectedRecord(job).violations.length > 0).length);
    expect(app.stderrLines.filter((line) => /^request-budget: GET \/enqueue 200 .* queries=2 .* enqueued=20$/.test(line))).toHaveLength(2);
  });

  it('alerts on each breach with the job as its route', async () => {
    const expected = PLAN.flatMap((job) => expectedRecord(job).violations.map((v) => `job ${QUEUE}.${job.name} ${v.split(' ')[0]}`));
    const breaches = () =>
      app.stderrLines.filter((line) => line.startsWith('{"event":"budget.breach"')).map((line) => JSON.parse(line) as Record<string, unknown>);
    await expect.poll(() => breaches().filter((b) => String(b.route).startsWith('job ')).length).toBe(expected.length);
    expect(
      breaches()
        .filter((b) => String(b.route).startsWith('job '))
        .map((b) => `${b.route} ${b.metric}`)
        .sort(),
    ).toEqual(expected.sort());
  });

  it('counts jobs in the metrics by job name, and enqueued jobs by route', async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const sample = (name: string, labels: Record<string, string>) => {
      const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
      return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const count = (name: string) => PLAN.filter((job) => job.name === name).length;
    expect(sample('request_budget_request_duration_ms_count', { route: `job ${QUEUE}.send`, status_class: 'none' })).toBe(count('send'));
    expect(sample('request_budget_request_duration_ms_count', { route: `job ${QUEUE}.digest` })).toBe(count('digest'));
    const breaches = (name: string, metric: string) =>
      PLAN.filter((job) => job.name === name && expectedRecord(job).violations.some((v) => v.startsWith(metric))).length;
    expect(sample('request_budget_breaches_total', { route: `job ${QUEUE}.send`, metric: 'db.queries' })).toBe(breaches('send', 'db.queries'));
    expect(sample('request_budget_breaches_total', { route: `job ${QUEUE}.send`, metric: 'db.repeated_count' })).toBe(breaches('send', 'db.repeated_count'));
    expect(sample('request_budget_jobs_enqueued_total', { route: 'GET /enqueue' })).toBe(40);
    expect(sample('request_budget_limit', { route: `job ${QUEUE}.digest`, metric: 'db.queries' })).toBe(4);
  });
});

describe('BullMQ imported as an ES module, under --import', () => {
  it('gives each job its root and counts the enqueue, as under --require', async () => {
    const esm = await startApp({
      script: 'test/fixtures/stacks/bullmq-esm-app.mjs',
      requireRegister: false,
      nodeArgs: ['--import', '@request-budget/node/register'],
      timeoutMs: 30_000,
      env: appEnv({}),
    });
    try {
      const request = await tracedGet(`${esm.url}/enqueue/3`);
      expect(request.response.status).toBe(200);
      const ids = (JSON.parse(request.response.body) as { ids: string[] }).ids;
      const { server } = await awaitServerSpan(receiver, request);
      expect(server.attributes).toMatchObject({ 'cost.db.queries': 0, 'cost.jobs.enqueued': 3 });
      const roots = await jobRoots('rbbq-esm', ids);
      for (const id of ids) {
        expect(roots.get(id)!.map((span) => [span.attributes['request_budget.job.name'], span.attributes['cost.db.queries'], span.traceId])).toEqual([
          ['rbbq-esm.mail', 2, request.traceId],
        ]);
      }
    } finally {
      await esm.stop();
    }
  });
});

describe("beside BullMQ's own telemetry (bullmq-otel)", () => {
  it("keeps each job's record exact and its trace joined; BullMQ's own spans are no enqueue and no job", async () => {
    const otel = await startApp({
      script: 'test/fixtures/stacks/bullmq-app.js',
      timeoutMs: 30_000,
      env: appEnv({ WORKER_QUEUES: OTEL_QUEUE, WORKER_CONCURRENCY: '2', BULLMQ_OTEL: '1' }),
    });
    try {
      const jobs: PlannedJob[] = [2, 3].map((queries) => ({ run, index: 500 + queries, name: 'send', queries, nPlusOne: true, redis: 1 }));
      const request = await tracedGet(enqueueUrl(otel, jobs, 'add', OTEL_QUEUE));
      const ids = (JSON.parse(request.response.body) as { ids: string[] }).ids;
      const { server, trace } = await awaitServerSpan(receiver, request);
      expect(server.attributes).toMatchObject({ 'cost.db.queries': 2, 'cost.jobs.enqueued': 2 });
      // BullMQ's own `add` span (no messaging.system) runs under ours.
      const ours = trace.filter((s) => s.kind === OtlpSpanKind.PRODUCER && s.attributes['messaging.system'] === 'bullmq');
      expect(
        trace
          .filter((s) => s.kind === OtlpSpanKind.PRODUCER && s.attributes['bullmq.queue.operation'] === 'add')
          .map((s) => ours.some((o) => o.spanId === s.parentSpanId)),
      ).toEqual([true, true]);
      const roots = await jobRoots(OTEL_QUEUE, ids);
      const all = await receiver.waitFor((spans) => spans.filter((s) => s.name === `process ${OTEL_QUEUE}` && s.traceId === request.traceId).length === 2);
      for (const [i, id] of ids.entries()) {
        const [root] = roots.get(id)!;
        expect([root!.attributes['cost.db.queries'], root!.attributes['cost.db.repeated_count']]).toEqual([
          jobs[i]!.queries + 1,
          Math.max(1, jobs[i]!.queries - 1),
        ]);
        // The job's root is a child of BullMQ's `process` span, which continues the request's trace.
        const process = all.find((s) => s.spanId === root!.parentSpanId)!;
        expect([process.name, process.traceId]).toEqual([`process ${OTEL_QUEUE}`, request.traceId]);
      }
    } finally {
      await otel.stop();
    }
  });
});

describe('a sandboxed processor (a file BullMQ runs in child processes)', () => {
  it('gets its job roots in the child, which inherits --require, and none in the parent', async () => {
    const sandboxed = await startApp({
      script: 'test/fixtures/stacks/bullmq-app.js',
      timeoutMs: 30_000,
      env: appEnv({ WORKER_QUEUES: SANDBOX_QUEUE, WORKER_CONCURRENCY: '2', SANDBOXED: '1' }),
    });
    try {
      const jobs: PlannedJob[] = [1, 2, 3].map((queries) => ({ run, index: 400 + queries, name: 'send', queries, nPlusOne: false, redis: 0 }));
      let ids: string[] = [];
      const delta = await pg.during(async () => {
        const request = await tracedGet(enqueueUrl(app, jobs, 'add', SANDBOX_QUEUE));
        ids = (JSON.parse(request.response.body) as { ids: string[] }).ids;
        for (const id of ids) await sandboxed.waitForLine(new RegExp(`^completed ${SANDBOX_QUEUE} ${id} `), 20_000, 'stdout');
      });
      expect(callsOf(delta)[structureOf(SANDBOXED_STATEMENT)]).toBe(6);
      const roots = await jobRoots(SANDBOX_QUEUE, ids);
      expect(
        ids.map((id) =>
          roots
            .get(id)!
            .map((span) => [span.attributes['request_budget.job.name'], span.attributes['cost.db.queries'], span.attributes['cost.db.repeated_count']]),
        ),
      ).toEqual([[[`${SANDBOX_QUEUE}.send`, 1, 1]], [[`${SANDBOX_QUEUE}.send`, 2, 2]], [[`${SANDBOX_QUEUE}.send`, 3, 3]]]);
      // Opened in the child: its process is not the parent's.
      const pids = new Set([...roots.values()].flat().map((span) => span.resource['process.pid']));
      expect(
        [...pids].every((pid) => typeof pid === 'number' && pid !== sandboxed.child.pid),
        `job roots from pids ${[...pids].join(', ')}`,
      ).toBe(true);
      expect(sandboxed.stderrLines.filter((line) => line.includes('sandboxed processor'))).toEqual([]);
    } finally {
      await sandboxed.stop();
    }
  });
});

describe('jobs that fail, flows, and a worker that dies mid-job', () => {
  it('ends the root of a job that throws mid-job with an error and only what ran; its retry starts clean', async () => {
    const job: PlannedJob = { run, index: 100, name: 'send', queries: 4, nPlusOne: false, redis: 1, failOnFirstAttempt: 2 };
    const request = await tracedGet(enqueueUrl(app, [job], 'add', QUEUE, { attempts: 2 }));
    const [id] = (JSON.parse(request.response.body) as { ids: string[] }).ids;
    const [first, second] = (await jobRoots(QUEUE, [id!], 2)).get(id!)!.sort((a, b) => Number(a.startTimeUnixNano - b.startTimeUnixNano));
    expect(first!.attributes).toMatchObject({ 'request_budget.job.attempt': 1, 'cost.db.queries': 2, 'cost.db.rows': 2 });
    expect(first!.status).toEqual({ code: 2, message: 'job 100 fails on its first attempt' });
    expect(first!.events.map((e) => e.name)).toContain('exception');
    expect(second!.attributes).toMatchObject({ 'request_budget.job.attempt': 2, 'cost.db.queries': 5, 'cost.db.rows': 4 });
    expect(second!.status.code).not.toBe(2);
    await app.waitForLine(new RegExp(`^request-budget: job ${QUEUE}.send error .* queries=2 `), 5000, 'stderr');
  });

  it('counts every job of a flow as enqueued, and each runs as a job of its own', async () => {
    const jobs: PlannedJob[] = [0, 1, 2].map((i) => ({ run, index: 200 + i, name: 'send', queries: i + 1, nPlusOne: false, redis: 0 }));
    const request = await tracedGet(enqueueUrl(app, jobs, 'flow'));
    expect(request.response.status).toBe(200);
    const ids = (JSON.parse(request.response.body) as { ids: string[] }).ids;
    const { server } = await awaitServerSpan(receiver, request);
    expect(server.attributes).toMatchObject({ 'cost.db.queries': 2, 'cost.jobs.enqueued': 3 });
    const roots = await jobRoots(QUEUE, ids);
    expect(ids.map((id) => roots.get(id)!.map((span) => span.attributes['cost.db.queries']))).toEqual([[1], [2], [3]]);
  });

  it('leaves no record behind for a job whose worker was killed mid-job; the job, run again, is recorded once', async () => {
    const crashEnv = appEnv({ WORKER_QUEUES: CRASH_QUEUE, WORKER_CONCURRENCY: '1', LOCK_DURATION_MS: '1000', STALLED_INTERVAL_MS: '500' });
    const worker = await startApp({ script: 'test/fixtures/stacks/bullmq-app.js', timeoutMs: 30_000, env: crashEnv });
    const job: PlannedJob = { run, index: 300, name: 'send', queries: 3, nPlusOne: false, redis: 0, hangOnFirstAttempt: 2 };
    let id = '';
    let restarted: AppProcess | undefined;
    try {
      const delta = await pg.during(async () => {
        const request = await tracedGet(enqueueUrl(app, [job], 'add', CRASH_QUEUE));
        id = (JSON.parse(request.response.body) as { ids: string[] }).ids[0]!;
        await worker.waitForLine(new RegExp(`^hanging in job ${id}$`), 10_000, 'stdout');
        await worker.stop('SIGKILL');
        restarted = await startApp({ script: 'test/fixtures/stacks/bullmq-app.js', timeoutMs: 30_000, env: crashEnv });
        await restarted.waitForLine(new RegExp(`^completed ${CRASH_QUEUE} ${id} `), 20_000, 'stdout');
      });
      const roots = (await jobRoots(CRASH_QUEUE, [id])).get(id)!;
      // Let anything the dead worker might still have had in flight arrive: nothing does.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(jobRootsOf(receiver.spans, CRASH_QUEUE, [id])).toHaveLength(1);
      expect(roots[0]!.attributes).toMatchObject({ 'request_budget.job.attempt': 2, 'cost.db.queries': 3, 'cost.db.rows': 3 });
      // The server ran the killed attempt's 2 statements and the second attempt's 3.
      const calls = callsOf(delta);
      for (const text of [BACKGROUND, ...REQUEST_STATEMENTS]) delete calls[structureOf(text)];
      expect(calls).toEqual({ [structureOf(STATEMENTS[0]!)]: 2, [structureOf(STATEMENTS[1]!)]: 2, [structureOf(STATEMENTS[2]!)]: 1 });
    } finally {
      await restarted?.stop();
    }
  }, 60_000);
});
