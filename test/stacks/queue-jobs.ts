/**
 * What the queue tests (amqplib.test.ts, pg-boss.test.ts) share: the jobs they enqueue (each a
 * known number of statements, some an N+1; see test/fixtures/stacks/queue-jobs.js), the cost
 * record and budget verdict each job must get under queue-budgets.yaml, the statements the
 * database must have run for them, and the enqueuing request sent with a trace id of the test's.
 */
import { randomBytes } from 'node:crypto';
import type { ServerDelta } from '../support/db-truth';
import type { OtlpReceiver, ReceivedSpan } from '../support/otlp-receiver';
import { OtlpSpanKind } from '../support/received-span';
import { awaitServerSpan } from '../support/traced-request';

export const JOB_NAME = 'request_budget.job.name';
/** The fixtures' background loop (outside any request or job), as pg_stat_statements keys it. */
export const BACKGROUND_STATEMENT = 'SELECT $1::text AS background';
const COLUMNS = ['a', 'b', 'c', 'd', 'e', 'f'];

/** The statements of the fixtures (queue-jobs.js) on their table, as pg_stat_statements keys them. */
export function statementTexts(table: string) {
  return {
    step: (i: number) => `SELECT ${COLUMNS[i - 1]} FROM ${table} WHERE id = $1`,
    parent: `SELECT id FROM ${table} WHERE id = $1`,
    child: `SELECT id, a FROM ${table} WHERE id = $1 AND a < $2`,
    /** The enqueuing request's own two. */
    request: [`SELECT count(*) FROM ${table} WHERE id <= $1`, `SELECT max(id) FROM ${table} WHERE id <= $1`],
  };
}

/** Creates the fixtures' table (`rbmq_jobs`, `rbpb_jobs`): rows 1..1000, a = 0. */
export async function createJobsTable(admin: { query(text: string): Promise<unknown> }, table: string): Promise<void> {
  await admin.query(`CREATE TABLE IF NOT EXISTS ${table} (id int PRIMARY KEY, a int NOT NULL, b int, c int, d int, e int, f int)`);
  await admin.query(`TRUNCATE ${table}`);
  await admin.query(`INSERT INTO ${table} SELECT g, 0, g, g, g, g, g FROM generate_series(1, 1000) AS g`);
}

export interface JobSpec {
  readonly id: number;
  readonly queue: string;
  /** Statements the job runs. */
  readonly n: number;
  /** One parent statement, then n - 1 times the same child statement. */
  readonly plusOne: boolean;
  /** Throws after its statements. */
  readonly fail?: boolean;
  /** The job's id in the queue, where the test chooses it (pg-boss). */
  readonly uuid?: string;
}

/** `count` jobs from `firstId`, spread over `queues`, 0 to 6 statements each, some an N+1. */
export function jobSpecs(queues: readonly string[], count: number, firstId = 1): JobSpec[] {
  return Array.from({ length: count }, (_, i) => {
    const n = i % 7;
    return { id: firstId + i, queue: queues[i % queues.length]!, n, plusOne: n >= 3 && i % 2 === 0 };
  });
}

/** The cost record and verdict a job must get. */
export interface ExpectedJob {
  readonly queries: number;
  readonly rows: number;
  readonly repeated: number;
  readonly statement: string | undefined;
  readonly rule: string;
  readonly violations: string[];
}

/** `email` jobs: at most 3 statements; the others (`<prefix>.*`): 5, and 3 of one statement. */
export function expectedJob(job: JobSpec, prefix: string, table: string): ExpectedJob {
  const texts = statementTexts(table);
  const repeated = job.plusOne ? job.n - 1 : Math.min(job.n, 1);
  const statement = job.n === 0 ? undefined : job.plusOne ? texts.child : texts.step(1);
  const email = job.queue === `${prefix}.email`;
  const violations: string[] = [];
  if (email) {
    if (job.n > 3) violations.push(`db.queries ${job.n}>3`);
  } else {
    if (job.n > 5) violations.push(`db.queries ${job.n}>5`);
    if (repeated > 3) violations.push(`db.repeated_count ${repeated}>3`);
  }
  return { queries: job.n, rows: job.n, repeated, statement, rule: email ? `${prefix}.email` : `${prefix}.*`, violations };
}

/** What a job root span says, in the shape of {@link ExpectedJob}. */
export function recordOf(root: ReceivedSpan): ExpectedJob {
  const a = root.attributes;
  return {
    queries: a['cost.db.queries'] as number,
    rows: a['cost.db.rows'] as number,
    repeated: a['cost.db.repeated_count'] as number,
    statement: a['cost.db.repeated_statement'] as string | undefined,
    rule: a['budget.rule'] as string,
    violations: (a['budget.violations'] as string[] | undefined) ?? [],
  };
}

/** The statements the jobs run, by text, as pg_stat_statements keys them. */
export function statementsOf(jobs: readonly JobSpec[], table: string): Map<string, number> {
  const texts = statementTexts(table);
  const calls = new Map<string, number>();
  const add = (text: string, times: number) => times > 0 && calls.set(text, (calls.get(text) ?? 0) + times);
  for (const job of jobs) {
    if (job.plusOne) {
      add(texts.parent, 1);
      add(texts.child, job.n - 1);
    } else {
      for (let i = 1; i <= job.n; i += 1) add(texts.step(i), 1);
    }
  }
  return calls;
}

/** The statements of the enqueuing request. */
export function requestStatements(table: string): Map<string, number> {
  return new Map(statementTexts(table).request.map((text) => [text, 1]));
}

/** The server's statements by text, less the background loop's. */
export function callsWithoutBackground(delta: ServerDelta): Map<string, number> {
  return new Map([...delta.byStatement].filter(([text]) => text !== BACKGROUND_STATEMENT).map(([text, { calls }]) => [text, calls]));
}

/** Sums statement maps. */
export function addCalls(...maps: ReadonlyMap<string, number>[]): Map<string, number> {
  const sum = new Map<string, number>();
  for (const map of maps) for (const [text, calls] of map) sum.set(text, (sum.get(text) ?? 0) + calls);
  return sum;
}

/** Sorted entries, for a readable toEqual. */
export const sortedCalls = (map: ReadonlyMap<string, number>) => [...map].sort(([a], [b]) => a.localeCompare(b));

export interface EnqueueResult {
  readonly status: number;
  readonly server: ReceivedSpan;
  readonly trace: ReceivedSpan[];
}

/** POST /enqueue {jobs, waitFor} with a trace id of the test's; resolves with the request's server span. */
export async function enqueue(receiver: OtlpReceiver, baseUrl: string, jobs: readonly JobSpec[], waitFor: number): Promise<EnqueueResult> {
  const traceId = randomBytes(16).toString('hex');
  const parentSpanId = randomBytes(8).toString('hex');
  const response = await fetch(`${baseUrl}/enqueue`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${parentSpanId}-01` },
    body: JSON.stringify({ jobs, waitFor }),
    signal: AbortSignal.timeout(20_000),
  });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`POST /enqueue: ${response.status} ${body}`);
  const { server, trace } = await awaitServerSpan(
    receiver,
    { response: { status: response.status, body, headers: response.headers }, traceId, parentSpanId },
    15_000,
  );
  return { status: response.status, server, trace };
}

/** Job roots received so far whose job name starts with `prefix`. */
export function jobRoots(spans: readonly ReceivedSpan[], prefix: string): ReceivedSpan[] {
  return spans.filter((s) => s.kind === OtlpSpanKind.CONSUMER && String(s.attributes[JOB_NAME] ?? '').startsWith(prefix));
}

/** Waits until `count` job roots of `prefix` have arrived; returns them. */
export async function awaitJobRoots(receiver: OtlpReceiver, prefix: string, count: number, timeoutMs = 30_000): Promise<ReceivedSpan[]> {
  const spans = await receiver.waitFor((all) => jobRoots(all, prefix).length >= count, { timeoutMs });
  return jobRoots(spans, prefix);
}

/** The PostgreSQL query spans (connection acquisition aside) whose parent is `root`. */
export function queriesUnder(spans: readonly ReceivedSpan[], root: ReceivedSpan): ReceivedSpan[] {
  return spans.filter(
    (s) =>
      s.parentSpanId === root.spanId &&
      s.traceId === root.traceId &&
      s.attributes['db.system.name'] === 'postgresql' &&
      typeof s.attributes['db.query.text'] === 'string',
  );
}
