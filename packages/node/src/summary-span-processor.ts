/**
 * SummarySpanProcessor: one line per finished request on stderr, so a developer sees what each
 * request cost with nothing else running:
 *
 *   request-budget: GET /users/:id 200 12.4ms queries=3 db=4.1ms rows=3 heap=+1.2MiB(high) http=0
 *   request-budget: GET /users-with-orders 200 48.0ms queries=21 db=30.2ms rows=120 heap=+310KiB(low) http=0 repeated=20×"SELECT * FROM orders WHERE user_id = $1" OVER BUDGET (GET /users-with-orders): db.queries 21>10, db.repeated_count 20>5
 *
 * A job (withBudget, or a job of a queue: see jobs/) gets its line too, named after the job, with
 * `ok` or `error` for a status; a request or job that put jobs on a queue shows how many:
 *
 *   request-budget: POST /signup 200 31.0ms queries=2 db=3.2ms rows=1 heap=+96KiB(high) http=0 enqueued=1
 *   request-budget: job email.welcome ok 812.3ms queries=3 db=2.9ms rows=3 heap=+1.1MiB(high) http=1
 *
 * A query or call that ends after its request's response is in no line above; it gets a `late:`
 * line of its own, at most one per route every `lateIntervalMs` (see late-operations.ts):
 *
 *   request-budget: late: GET /after-response +1 query after the response (SELECT ? AS late)
 *
 * It is a span processor rather than an exporter so that it sees every request, sampled or not.
 * Lines are buffered and written on a timer, never on the request path; the buffer is bounded and
 * lines beyond it are counted and reported as dropped.
 */
import { SpanStatusCode, type Attributes } from '@opentelemetry/api';
import { hrTimeToMilliseconds } from '@opentelemetry/core';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace';
import {
  BUDGET_BREACHED,
  BUDGET_RULE,
  BUDGET_UNJUDGED,
  BUDGET_VIOLATIONS,
  COST_DB_BYTES,
  COST_DB_QUERIES,
  COST_DB_REPEATED_COUNT,
  COST_DB_REPEATED_STATEMENT,
  COST_DB_ROWS,
  COST_DB_TIME_MS,
  COST_HEAP_CONFIDENCE,
  COST_HEAP_DELTA_BYTES,
  COST_HTTP_CLIENT_CALLS,
  COST_HTTP_CLIENT_UNTIMED,
  COST_JOBS_ENQUEUED,
  COST_MEMORY_ALLOCATED_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES,
  HTTP_REQUEST_METHOD,
  JOB_NAME_ATTRIBUTE,
  HTTP_ROUTE,
} from '@request-budget/core';
import { LateOperationLines, lateOperationOf, type LateOperation } from './late-operations';
import { stringAttribute } from './string-attribute';

// HTTP server attributes read only for the summary line (stable HTTP semantic conventions).
const HTTP_RESPONSE_STATUS_CODE = 'http.response.status_code';
const URL_PATH = 'url.path';

export interface SummaryOptions {
  /** Where lines go. @default process.stderr */
  readonly write?: (text: string) => void;
  /** Milliseconds between writes. @default 100 */
  readonly flushIntervalMs?: number;
  /** Lines held before new ones are dropped. @default 2000 */
  readonly maxBufferedLines?: number;
  /**
   * Shortest time between two `late:` lines (queries or calls that ended after their request's
   * response) for one route; those in between are summed into the next. @default 10000
   */
  readonly lateIntervalMs?: number;
}

const STATEMENT_PREVIEW_CHARS = 120;

export class SummarySpanProcessor implements SpanProcessor {
  private readonly write: (text: string) => void;
  private readonly flushIntervalMs: number;
  private readonly maxBufferedLines: number;
  private buffered: string[] = [];
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private isShutdown = false;
  private readonly late: LateOperationLines;

  // process.exit() skips timers: what is buffered then is written synchronously on 'exit'.
  private readonly flushOnExit = () => this.flush(true);

  constructor(options: SummaryOptions = {}) {
    this.write = options.write ?? ((text) => process.stderr.write(text));
    this.flushIntervalMs = options.flushIntervalMs ?? 100;
    this.maxBufferedLines = options.maxBufferedLines ?? 2000;
    this.late = new LateOperationLines({ intervalMs: options.lateIntervalMs ?? 10_000 });
    process.on('exit', this.flushOnExit);
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.isShutdown) return;
    const late = lateOperationOf(span);
    if (late !== undefined) return this.recordLate(late);
    if (span.attributes[COST_DB_QUERIES] === undefined) return;
    if (this.buffered.length >= this.maxBufferedLines) {
      this.dropped += 1;
      return;
    }
    try {
      this.buffered.push(formatSummaryLine(span));
    } catch {
      return; // a malformed span is not worth an error in span.end()
    }
    this.timer ??= setTimeout(() => this.flush(), this.flushIntervalMs).unref();
  }

  forceFlush(): Promise<void> {
    this.flush();
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    this.flush(true);
    this.isShutdown = true;
    process.removeListener('exit', this.flushOnExit);
    return Promise.resolve();
  }

  private recordLate(late: LateOperation): void {
    try {
      this.late.record(late);
    } catch {
      return;
    }
    this.timer ??= setTimeout(() => this.flush(), this.flushIntervalMs).unref();
  }

  /** Writes what is buffered; `all` also writes late counts still inside their interval. */
  private flush(all = false): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    let text = this.buffered.join('');
    this.buffered = [];
    try {
      text += this.late.take(all);
      // Late counts held back by the interval are written when it is over.
      const due = this.late.nextDueInMs();
      if (due !== undefined && !all) this.timer = setTimeout(() => this.flush(), Math.max(due, this.flushIntervalMs)).unref();
    } catch {
      // late lines are a convenience too
    }
    if (this.dropped > 0) {
      text += `request-budget: ${this.dropped} summary lines dropped (more than ${this.maxBufferedLines} waiting to be written)\n`;
      this.dropped = 0;
    }
    if (text.length === 0) return;
    try {
      this.write(text);
    } catch {
      // The summary is a convenience: a closed stderr must not break the app.
    }
  }
}

/** The summary line of a root span that carries the cost record. */
export function formatSummaryLine(span: ReadableSpan): string {
  const a = span.attributes;
  const durationMs = hrTimeToMilliseconds(span.duration);
  // The route template when the framework set one; else the path, so unrouted requests
  // (a bare http server, a 404) are still recognisable.
  const target = stringAttribute(a[HTTP_ROUTE]) ?? stringAttribute(a[URL_PATH]);
  const job = a[JOB_NAME_ATTRIBUTE];
  const route = typeof job === 'string' ? `job ${job}` : target !== undefined ? `${stringAttribute(a[HTTP_REQUEST_METHOD]) ?? ''} ${target}`.trim() : span.name;
  const status = stringAttribute(a[HTTP_RESPONSE_STATUS_CODE]) ?? (span.status.code === SpanStatusCode.ERROR ? 'error' : 'ok');
  const parts = [
    `request-budget: ${route} ${status} ${durationMs.toFixed(1)}ms`,
    `queries=${shown(a[COST_DB_QUERIES])}`,
    `db=${Number(a[COST_DB_TIME_MS]).toFixed(1)}ms`,
    `rows=${shown(a[COST_DB_ROWS])}`,
    // The wire size of those rows, where every driver reported it (cost.db.bytes).
    ...(typeof a[COST_DB_BYTES] === 'number' ? [`bytes=${formatSize(a[COST_DB_BYTES])}`] : []),
    `heap=${formatBytes(Number(a[COST_HEAP_DELTA_BYTES]))}(${shown(a[COST_HEAP_CONFIDENCE])})`,
    ...memoryPart(a),
    `http=${shown(a[COST_HTTP_CLIENT_CALLS])}`,
  ];
  const untimed = Number(a[COST_HTTP_CLIENT_UNTIMED]);
  if (untimed > 0) parts.push(`untimed=${untimed}`);
  const enqueued = Number(a[COST_JOBS_ENQUEUED] ?? 0);
  if (enqueued > 0) parts.push(`enqueued=${enqueued}`);
  const repeated = Number(a[COST_DB_REPEATED_COUNT]);
  if (repeated > 1) parts.push(`repeated=${repeated}×${JSON.stringify(preview(String(a[COST_DB_REPEATED_STATEMENT])))}`);
  const violations = a[BUDGET_VIOLATIONS];
  if (a[BUDGET_BREACHED] === true && Array.isArray(violations)) parts.push(`OVER BUDGET (${shown(a[BUDGET_RULE])}): ${violations.join(', ')}`);
  const unjudged = a[BUDGET_UNJUDGED];
  if (Array.isArray(unjudged) && unjudged.length > 0) parts.push(`NOT JUDGED (${shown(a[BUDGET_RULE])}): ${unjudged.join(', ')}`);
  return `${parts.join(' ')}\n`;
}

/** `mem=1.9MiB` (the request's own allocation), with its route's estimate once there is one: `mem=1.9MiB(route 2.0MiB±12KiB)`. */
function memoryPart(a: Attributes): string[] {
  const own = a[COST_MEMORY_ALLOCATED_BYTES];
  if (typeof own !== 'number') return [];
  const estimate = a[COST_MEMORY_ROUTE_ESTIMATE_BYTES];
  const route = typeof estimate === 'number' ? `(route ${formatSize(estimate)}±${formatSize(Number(a[COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES] ?? 0))})` : '';
  return [`mem=${formatSize(own)}${route}`];
}

/** An attribute of the cost record or budget as the line shows it; `?` when the span lacks it. */
function shown(value: unknown): string {
  return stringAttribute(value) ?? '?';
}

function formatSize(bytes: number): string {
  return formatBytes(bytes).slice(1);
}

function formatBytes(bytes: number): string {
  const sign = bytes < 0 ? '-' : '+';
  const size = Math.abs(bytes);
  if (size >= 1024 * 1024) return `${sign}${(size / (1024 * 1024)).toFixed(1)}MiB`;
  if (size >= 1024) return `${sign}${Math.round(size / 1024)}KiB`;
  return `${sign}${size}B`;
}

function preview(statement: string): string {
  return statement.length > STATEMENT_PREVIEW_CHARS ? `${statement.slice(0, STATEMENT_PREVIEW_CHARS - 1)}…` : statement;
}
