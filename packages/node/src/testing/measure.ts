/**
 * measureCost(fn): everything `fn` causes in this process — the queries and calls it makes
 * itself, and those of every request it sends to a server running in the same process
 * (supertest, fetch or http.request to the app under test), each request listed with its route.
 *
 * How requests are found: the measurement is a root span with a trace of its own. The HTTP
 * client instrumentation propagates that trace to the server (traceparent), where the request's
 * SERVER span becomes a root of its own cost. Every server root started in the measurement's
 * trace is followed until it ends — a client can read the whole response before the server span
 * ends, so the measurement waits for it, within a bound — and its cost is added. The client call
 * that carried such a request is the test's own doing, not the code's: it is not counted.
 */
import { context, SpanKind, trace, type Span } from '@opentelemetry/api';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { HTTP_CLIENT_TIMED, MEASUREMENT_ATTRIBUTE, ROOT_MARKER_ATTRIBUTE, roundMs, type CostRecord, type RepeatedStatement } from '@request-budget/core';
import { attributionOf } from '../cost-span-processor';
import { reportProblem } from '../diagnostics';
import { watchTrace } from '../measurement-registry';
import { stringAttribute } from '../string-attribute';
import { costPartOf, measuredRoute, sortStatements, type CostPart } from './cost-part';
import { findUninstrumented, insideJest, jestSetupMissingError, loadedBeforeError, notRunningError } from './instrumentation-check';
import { jestSetupRan, runMeasurementHooks } from './measure-hooks';
import { currentRecorder } from './recording';

/** Options of {@link measureCost}. */
export interface MeasureOptions {
  /**
   * Names the measured code's own part in reports and the CI baseline (`measureCost <name>`).
   * @default undefined (the part is called `measureCost`)
   */
  readonly name?: string;
  /**
   * How long to wait, once `fn` has settled, for the requests it sent to this process's server
   * to end (their server span ends a moment after the client has read the response).
   * @default 2000
   */
  readonly requestTimeoutMs?: number;
}

/** What the measured code cost: the sum of its own part and of every request it sent. */
export interface MeasuredCost extends CostRecord {
  /** Every statement fingerprint with its count over all parts, most repeated first. */
  readonly statements: readonly RepeatedStatement[];
  /** The measured code's own queries and calls (the test's calls to this process's server excluded). */
  readonly direct: CostPart;
  /** Each request sent to a server in this process, in the order they ended, with its route. */
  readonly requests: readonly CostPart[];
}

/** Most requests one measurement follows. */
const MAX_REQUESTS = 10_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 2000;

// The module cache the code under test shares (jest's registry inside jest).
const moduleRequire: Pick<NodeJS.Require, 'resolve' | 'cache'> = typeof require === 'function' ? require : createRequire(join(process.cwd(), 'noop.js'));

/**
 * Runs `fn` inside a measurement and returns its cost. Rejects with fn's error if it throws; with
 * an explanation if request-budget is not running where the test runs, if a database driver was
 * loaded before it started, or if a request fn sent did not end in time.
 */
export async function measureCost(fn: () => unknown, options: MeasureOptions = {}): Promise<MeasuredCost> {
  runMeasurementHooks();
  const tracer = trace.getTracer('@request-budget/node/testing');
  // A trace of its own, so that the requests it sends are told apart from everyone else's.
  const span = tracer.startSpan('measureCost', { root: true, attributes: { [ROOT_MARKER_ATTRIBUTE]: true, [MEASUREMENT_ATTRIBUTE]: true } });
  if (attributionOf(span) === undefined) {
    span.end();
    throw notRunningError();
  }
  if (insideJest() && !jestSetupRan()) {
    span.end();
    throw jestSetupMissingError();
  }
  const uninstrumented = findUninstrumented(moduleRequire);
  if (uninstrumented.length > 0) {
    span.end();
    throw loadedBeforeError(uninstrumented);
  }
  const testName = currentRecorder()?.currentTest();
  const followed = new FollowedRequests(span);
  const stopWatching = watchTrace(span.spanContext().traceId, followed);
  try {
    try {
      // Awaited inside the context: a thenable (supertest's Test) sends its request when awaited.
      await context.with(trace.setSpan(context.active(), span), async () => await fn());
    } finally {
      span.end();
    }
    await followed.allEnded(options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
  } finally {
    stopWatching();
  }
  const measured = followed.result(span as unknown as ReadableSpan, measuredRoute(options.name));
  const recorder = currentRecorder();
  if (recorder !== undefined && (measured.direct.queries > 0 || measured.direct.httpClientCalls > 0)) recorder.recordPart(measured.direct, testName);
  return measured;
}

/** The server roots of one measurement's trace, and the client calls that carried them. */
class FollowedRequests {
  private readonly roots: { root: Span; ended: ReadableSpan | undefined }[] = [];
  /** Client calls made by the measured code itself, by span id: whether each had a timeout, and where to. */
  private readonly ownClientCalls = new Map<string, unknown>();
  private readonly ownClientTargets = new Map<string, string>();
  private overflow = false;
  private wake: (() => void) | undefined;

  constructor(private readonly measurement: Span) {}

  rootStarted(root: Span): void {
    if (this.roots.length >= MAX_REQUESTS) {
      this.overflow = true;
      return;
    }
    this.roots.push({ root, ended: undefined });
  }

  rootEnded(root: ReadableSpan): void {
    const entry = this.roots.find((candidate) => (candidate.root as unknown) === root);
    if (entry === undefined) return;
    entry.ended = root;
    if (this.roots.every((candidate) => candidate.ended !== undefined)) this.wake?.();
  }

  spanEnded(span: ReadableSpan, root: Span): void {
    if (root !== this.measurement || span.kind !== SpanKind.CLIENT) return;
    const id = span.spanContext().spanId;
    this.ownClientCalls.set(id, span.attributes[HTTP_CLIENT_TIMED]);
    const url = span.attributes['url.full'] ?? span.attributes['http.url'];
    if (typeof url === 'string') this.ownClientTargets.set(id, url);
  }

  async allEnded(timeoutMs: number): Promise<void> {
    if (this.overflow) throw new Error(`measureCost: the measured code sent more than ${MAX_REQUESTS} requests to this process; measure fewer at a time`);
    if (this.roots.every((entry) => entry.ended !== undefined)) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      timer = setTimeout(resolve, timeoutMs);
    });
    clearTimeout(timer);
    this.wake = undefined;
    const running = this.roots.filter((entry) => entry.ended === undefined);
    if (running.length > 0) {
      const names = running.map((entry) => `${describeRequest(entry.root)}`).join(', ');
      throw new Error(
        `measureCost: ${running.length === 1 ? 'a request' : `${running.length} requests`} the measured code sent to this process (${names}) had not ended ${timeoutMs} ms after it returned. ` +
          'Await each response inside the measured function (or raise requestTimeoutMs).',
      );
    }
  }

  result(measurement: ReadableSpan, route: string): MeasuredCost {
    const requests = this.roots.map((entry) => costPartOf(entry.ended!));
    const own = costPartOf(measurement, route);
    // The calls that carried the test's own requests to this process's server.
    const carriers = this.roots
      .map((entry) => (entry.root as unknown as ReadableSpan).parentSpanContext?.spanId)
      .filter((id): id is string => id !== undefined && this.ownClientCalls.has(id));
    warnOfOtherProcesses([...this.ownClientTargets].filter(([id]) => !carriers.includes(id)).map(([, url]) => url));
    const direct: CostPart = {
      ...own,
      httpClientCalls: own.httpClientCalls - carriers.length,
      httpClientUntimed: own.httpClientUntimed - carriers.filter((id) => this.ownClientCalls.get(id) === false).length,
    };
    return sumParts(direct, requests);
  }
}

function sumParts(direct: CostPart, requests: CostPart[]): MeasuredCost {
  const parts = [direct, ...requests];
  const total = (figure: (part: CostPart) => number) => parts.reduce((sum, part) => sum + figure(part), 0);
  // N+1 is a figure of one request: the worst part, not a sum over requests.
  const worst = parts.reduce((best, part) => (part.repeatedCount > best.repeatedCount ? part : best), direct);
  const counts = new Map<string, number>();
  for (const part of parts) for (const { fingerprint, count } of part.statements) counts.set(fingerprint, (counts.get(fingerprint) ?? 0) + count);
  return {
    durationMs: direct.durationMs,
    queries: total((part) => part.queries),
    dbTimeMs: roundMs(total((part) => part.dbTimeMs)),
    rows: total((part) => part.rows),
    repeatedCount: worst.repeatedCount,
    ...(worst.repeatedStatement !== undefined ? { repeatedStatement: worst.repeatedStatement } : {}),
    ...(direct.heapDeltaBytes !== undefined ? { heapDeltaBytes: direct.heapDeltaBytes } : {}),
    ...(direct.heapConfidence !== undefined ? { heapConfidence: direct.heapConfidence } : {}),
    httpClientCalls: total((part) => part.httpClientCalls),
    httpClientUntimed: total((part) => part.httpClientUntimed),
    statements: sortStatements([...counts].map(([fingerprint, count]) => ({ fingerprint, count }))),
    direct,
    requests,
  };
}

const warnedOrigins = new Set<string>();

/**
 * A request to this machine that reached no server of this process was served by another
 * process: the cost of serving it is not in the measurement. Said once per origin (stderr), not
 * thrown: measuring a call to a local stub server is legitimate.
 */
function warnOfOtherProcesses(urls: readonly string[]): void {
  for (const url of urls) {
    let origin: string;
    try {
      const parsed = new URL(url);
      if (!['localhost', '127.0.0.1', '[::1]'].includes(parsed.hostname)) continue;
      origin = parsed.origin;
    } catch {
      continue;
    }
    if (warnedOrigins.has(origin)) continue;
    warnedOrigins.add(origin);
    reportProblem(
      `measureCost: ${url} was served by another process (no server of this process received it), so the queries behind it are not in the measurement; ` +
        'serve the app in the test process (supertest(app), or app.listen() in the test setup) to measure what its routes cost',
    );
  }
}

function describeRequest(root: Span): string {
  const attributes = (root as unknown as ReadableSpan).attributes ?? {};
  const method = stringAttribute(attributes['http.request.method']) ?? stringAttribute(attributes['http.method']) ?? '';
  const target = stringAttribute(attributes['url.path']) ?? stringAttribute(attributes['http.target']) ?? stringAttribute(attributes['http.route']) ?? '';
  return `${method} ${target}`.trim() || 'unnamed request';
}
