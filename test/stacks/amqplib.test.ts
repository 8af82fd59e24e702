/**
 * RabbitMQ through amqplib, end to end under `node --require @request-budget/node/register`,
 * with no request-budget code in the app (test/fixtures/stacks/amqplib-app.js): each consumed
 * message is a job root of its own, named after its queue, judged by the `jobs` rules of
 * queue-budgets.yaml; the request that published the messages counts them as enqueued and keeps
 * its own two statements. Four consumers, prefetch 4 each, share a pg pool of 2 beside a
 * background query loop: one acks after its work, one acks before it, one consumes with noAck,
 * one on amqplib's callback API acks from a callback.
 * The truth is what PostgreSQL counted for the app's role in pg_stat_statements.
 */
import amqp from 'amqplib';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type AppProcess } from '../support/app-process';
import { pgTruth, type PgTruth, type ServerDelta } from '../support/db-truth';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver';
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

const ROLE = 'rb_amqp';
const TABLE = 'rbmq_jobs';
const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
const QUEUES = ['rbmq.email', 'rbmq.report', 'rbmq.audit', 'rbmq.callback'];
const START_TIMEOUT_MS = 40_000;

let receiver: OtlpReceiver;
let truth: PgTruth;
let app: AppProcess;

async function deleteQueues(): Promise<void> {
  const connection = await amqp.connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    for (const queue of QUEUES) await channel.deleteQueue(queue);
    await channel.close();
  } finally {
    await connection.close();
  }
}

beforeAll(async () => {
  [receiver, truth] = await Promise.all([startOtlpReceiver(), pgTruth(ROLE)]);
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
  await admin.connect();
  await createJobsTable(admin, TABLE).finally(() => admin.end());
  await deleteQueues();
  app = await startApp({
    script: 'test/fixtures/stacks/amqplib-app.js',
    env: {
      OTEL_SERVICE_NAME: 'amqplib-app',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      OTEL_BSP_MAX_QUEUE_SIZE: '20000',
      DATABASE_URL: truth.url,
      JOBS_TABLE: TABLE,
      AMQP_URL,
      PG_POOL_MAX: '2',
      PREFETCH: '4',
      BACKGROUND_INTERVAL_MS: '3',
      REQUEST_BUDGET_FILE: 'test/fixtures/stacks/queue-budgets.yaml',
    },
    timeoutMs: START_TIMEOUT_MS,
  });
});

afterAll(async () => {
  await app?.stop();
  await deleteQueues().catch(() => {});
  await Promise.all([truth?.close(), receiver?.close()]);
});

/** Enqueues the jobs in one request and waits for every job root; with what the server ran meanwhile. */
async function run(jobs: JobSpec[], waitFor: number) {
  receiver.clear();
  let request: EnqueueResult | undefined;
  let roots: Awaited<ReturnType<typeof awaitJobRoots>> = [];
  const delta: ServerDelta = await truth.during(async () => {
    request = await enqueue(receiver, app.url, jobs, waitFor);
    roots = await awaitJobRoots(receiver, 'rbmq.', jobs.length);
  });
  const byId = new Map(roots.map((root) => [Number(root.attributes['messaging.message_id']), root]));
  return { request: request!, roots, byId, delta, spans: receiver.spans };
}

describe('amqplib consumers: every message a job root', () => {
  it('40 jobs on 4 consumers (prefetch 4) and a pool of 2: every record exact, judged by its rule; the request keeps its own', async () => {
    const jobs = jobSpecs(QUEUES, 40);
    const { request, roots, byId, delta, spans } = await run(jobs, 10);

    expect(roots).toHaveLength(40);
    expect(byId.size).toBe(40);
    for (const job of jobs) {
      const root = byId.get(job.id)!;
      expect(root, `job ${job.id}`).toBeDefined();
      expect(root.attributes[JOB_NAME]).toBe(job.queue);
      expect(root.attributes['request_budget.root']).toBe(true);
      const expected = expectedJob(job, 'rbmq', TABLE);
      expect({ id: job.id, ...recordOf(root) }).toEqual({ id: job.id, ...expected });
      expect(root.attributes['budget.breached']).toBe(expected.violations.length > 0);
      expect(root.status.code).toBe(0);
      // Its queries are its children. That the record counts them all is what proves the span
      // stayed open until the handler settled (acked first, or noAck): a query that ends after
      // its root is no part of the record. (Span timestamps cannot show it: each span anchors its
      // clock to Date.now() when it starts, and under load two spans' clocks differ by ms.)
      expect(queriesUnder(spans, root)).toHaveLength(job.n);
      // The message continues the trace of the request that published it.
      expect(root.traceId).toBe(request.server.traceId);
    }
    // Some of each verdict, so the rules were really exercised.
    const breached = jobs.filter((job) => expectedJob(job, 'rbmq', TABLE).violations.length > 0);
    expect(breached.length).toBeGreaterThan(5);
    expect(breached.length).toBeLessThan(35);

    // The request: its own two statements, 40 enqueues (one PRODUCER span each), nothing of the jobs.
    const server = request.server;
    expect(server.attributes['cost.db.queries']).toBe(2);
    expect(server.attributes['cost.db.rows']).toBe(2);
    expect(server.attributes['cost.jobs.enqueued']).toBe(40);
    const publishes = request.trace.filter((s) => s.kind === OtlpSpanKind.PRODUCER && s.parentSpanId === server.spanId);
    expect(publishes).toHaveLength(40);
    expect(publishes.every((s) => s.attributes['messaging.system'] === 'rabbitmq')).toBe(true);
    // instrumentation-amqplib saw amqplib 2's connection open (lib/connect.js patched).
    expect(publishes.every((s) => s.attributes['messaging.protocol_version'] === '0.9.1' && s.attributes['server.address'] === '127.0.0.1')).toBe(true);
    expect(queriesUnder(spans, server)).toHaveLength(2);

    // The server's count, statement by statement: the jobs' and the request's, nothing else.
    const expectedCalls = addCalls(statementsOf(jobs, TABLE), requestStatements(TABLE));
    expect(sortedCalls(callsWithoutBackground(delta))).toEqual(sortedCalls(expectedCalls));
    const recorded = roots.reduce((sum, root) => sum + (root.attributes['cost.db.queries'] as number), 0) + (server.attributes['cost.db.queries'] as number);
    expect(recorded).toBe([...expectedCalls.values()].reduce((a, b) => a + b, 0));
    // The companion found instrumentation-amqplib's wrapper in place, and nothing failed.
    expect(app.stderrLines.filter((line) => line.startsWith('request-budget:'))).toEqual([]);
  });

  it('a job that throws mid-job: its root has an error status and its own statements; the next jobs have theirs', async () => {
    // On each queue: a job that runs 2 statements and throws, then two that succeed.
    const failing = QUEUES.map((queue, i): JobSpec => ({ id: 100 + i, queue, n: 2, plusOne: false, fail: true }));
    const after = QUEUES.flatMap((queue, i): JobSpec[] => [
      { id: 110 + i, queue, n: 1, plusOne: false },
      { id: 120 + i, queue, n: 3, plusOne: true },
    ]);
    const jobs = [...failing, ...after];
    const { byId, delta } = await run(jobs, 0);

    for (const job of failing) {
      const root = byId.get(job.id)!;
      expect(recordOf(root).queries).toBe(2);
      expect(root.status.code).toBe(2);
    }
    // rbmq.email and rbmq.callback nack the message (instrumentation-amqplib's status); the
    // handler promises of rbmq.report and rbmq.audit reject.
    expect(byId.get(100)!.status.message).toBe('nack called on message without requeue');
    expect(byId.get(103)!.status.message).toBe('nack called on message without requeue');
    expect(byId.get(101)!.status.message).toBe('job 101 failed on purpose');
    expect(byId.get(102)!.status.message).toBe('job 102 failed on purpose');
    expect(byId.get(101)!.events.some((e) => e.name === 'exception')).toBe(true);
    for (const job of after) {
      const root = byId.get(job.id)!;
      expect({ id: job.id, ...recordOf(root) }).toEqual({ id: job.id, ...expectedJob(job, 'rbmq', TABLE) });
      expect(root.status.code).toBe(0);
    }
    const expectedCalls = addCalls(statementsOf(jobs, TABLE), requestStatements(TABLE));
    expect(sortedCalls(callsWithoutBackground(delta))).toEqual(sortedCalls(expectedCalls));
    // The rejections still reached the process, as they would without request-budget.
    await app.waitForLine(/unhandled rejection: job 101 failed on purpose/, 5000, 'stdout');
    await app.waitForLine(/unhandled rejection: job 102 failed on purpose/, 5000, 'stdout');
  });
});

describe('library coverage', () => {
  /** The `request-budget:` lines of an app that only loads amqplib, run to its end. */
  async function diagnostics(env: Record<string, string | undefined>): Promise<string[]> {
    const app = await startApp({
      script: 'test/fixtures/library-coverage/load-libraries-app.js',
      env: { OTEL_TRACES_EXPORTER: 'none', REQUEST_BUDGET_SUMMARY: 'false', OTEL_NODE_ENABLED_INSTRUMENTATIONS: undefined, LOAD: 'amqplib', ...env },
      timeoutMs: START_TIMEOUT_MS,
    });
    await app.stop();
    return app.stderrLines.filter((line) => line.startsWith('request-budget:'));
  }

  it('says nothing when amqplib is instrumented, and one line with the fix when its instrumentation is off', async () => {
    expect(await diagnostics({ OTEL_NODE_DISABLED_INSTRUMENTATIONS: undefined })).toEqual([]);
    expect(await diagnostics({ OTEL_NODE_DISABLED_INSTRUMENTATIONS: 'amqplib' })).toEqual([
      'request-budget: amqplib 2.3.1 is loaded, but OTEL_NODE_DISABLED_INSTRUMENTATIONS turns off its instrumentation "amqplib", so its jobs get no cost record; fix: remove amqplib from OTEL_NODE_DISABLED_INSTRUMENTATIONS',
    ]);
  });
});
