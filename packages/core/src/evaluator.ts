/**
 * Judges one request's (or job's) cost record against the rule that applies to it. Pure: the
 * in-process span processor and the collector call it on the same attribute maps.
 */
import {
  COST_DB_BYTES,
  COST_DB_QUERIES,
  COST_DB_REPEATED_COUNT,
  COST_DB_REPEATED_STATEMENT,
  COST_DB_ROWS,
  COST_DB_TIME_MS,
  COST_HEAP_CONFIDENCE,
  COST_HEAP_DELTA_BYTES,
  COST_HEAP_IN_FLIGHT,
  COST_HTTP_CLIENT_CALLS,
  COST_HTTP_CLIENT_UNTIMED,
  COST_JOBS_ENQUEUED,
  COST_MEMORY_ALLOCATED_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_BYTES,
  type HeapConfidence,
} from './attributes';
import type { LimitName, Severity } from './budget-file';
import { compileGlob } from './glob';
import type { ResolvedRule } from './budget-rules';
import type { RepeatedStatement } from './cost-tally';
import type { AttributeMap } from './span-classifier';

/** Metric names used in violations, events, metric labels and alert labels. */
export const BUDGET_METRICS: Record<LimitName, string> = {
  queries: 'db.queries',
  dbTimeMs: 'db.time_ms',
  rows: 'db.rows',
  repeatedQueries: 'db.repeated_count',
  heapDeltaBytes: 'heap.delta_bytes',
  allocatedBytes: 'memory.allocated_bytes',
  dbBytes: 'db.bytes',
  durationMs: 'duration_ms',
  httpClientCalls: 'http_client.calls',
  untimedHttpCalls: 'http_client.untimed',
  enqueuedJobs: 'jobs.enqueued',
};

/** The figures a budget is judged on. */
export interface CostRecord {
  readonly durationMs: number;
  readonly queries: number;
  readonly dbTimeMs: number;
  readonly rows: number;
  readonly repeatedCount: number;
  readonly repeatedStatement?: string;
  /** Every statement with its count, when known (in-process); lets allowRepeated skip the top one. */
  readonly statements?: readonly RepeatedStatement[];
  readonly heapDeltaBytes?: number;
  readonly heapConfidence?: HeapConfidence;
  /** Requests in flight beside this one (itself included): why a heap delta was not trusted. */
  readonly heapInFlight?: number;
  /** Bytes the request's own code allocated (a lower bound when a collection's size is not known yet). */
  readonly allocatedBytes?: number;
  /** The route's estimate of bytes allocated per request, once it has one. */
  readonly allocatedEstimateBytes?: number;
  /** Wire bytes of result rows; absent when an operation's driver did not report them. */
  readonly dbBytes?: number;
  readonly httpClientCalls: number;
  readonly httpClientUntimed: number;
  /** Jobs or messages put on a queue; absent where nothing counted them (older records). */
  readonly jobsEnqueued?: number;
}

export interface Violation {
  /** e.g. `db.queries` (see {@link BUDGET_METRICS}). */
  readonly metric: string;
  readonly value: number;
  readonly limit: number;
  readonly severity: Severity;
  /** For `db.repeated_count`: the statement that repeated. */
  readonly statement?: string;
}

const CONFIDENCE_ORDER: Record<HeapConfidence, number> = { low: 0, medium: 1, high: 2 };

/** Every limit of the rule that the cost exceeds (strictly greater than the limit). */
export function evaluateBudget(cost: CostRecord, rule: ResolvedRule): Violation[] {
  const violations: Violation[] = [];
  const check = (name: LimitName, value: number | undefined, statement?: string) => {
    const limit = rule.limits[name];
    if (limit === undefined || value === undefined || !(value > limit)) return;
    violations.push({ metric: BUDGET_METRICS[name], value, limit, severity: rule.severity, ...(statement !== undefined ? { statement } : {}) });
  };
  check('queries', cost.queries);
  check('dbTimeMs', cost.dbTimeMs);
  check('rows', cost.rows);
  const repeated = repeatedNotAllowed(cost, rule.allowRepeated);
  check('repeatedQueries', repeated?.count, repeated?.fingerprint);
  if (heapTrusted(cost, rule)) check('heapDeltaBytes', cost.heapDeltaBytes);
  check('allocatedBytes', judgedAllocation(cost));
  check('dbBytes', cost.dbBytes);
  check('durationMs', cost.durationMs);
  check('httpClientCalls', cost.httpClientCalls);
  check('untimedHttpCalls', cost.httpClientUntimed);
  check('enqueuedJobs', cost.jobsEnqueued);
  return violations;
}

/** A limit of the rule that could not be judged on this record, and why. */
export interface UnjudgedLimit {
  readonly metric: string;
  readonly reason: string;
}

/**
 * Every limit of the rule that the record cannot be judged on: a limit is never skipped without
 * a word. Empty for almost every request; the caller writes them as `budget.unjudged`.
 */
export function unjudgedLimits(cost: CostRecord, rule: ResolvedRule): UnjudgedLimit[] {
  const { limits } = rule;
  if (limits.heapDeltaBytes === undefined && limits.allocatedBytes === undefined && limits.dbBytes === undefined) return [];
  const unjudged: UnjudgedLimit[] = [];
  if (limits.heapDeltaBytes !== undefined && cost.heapDeltaBytes !== undefined && !heapTrusted(cost, rule)) {
    const reason =
      (cost.heapInFlight ?? 1) > 1
        ? `${cost.heapInFlight} requests in flight (heapMinConfidence ${rule.heapMinConfidence}; allocatedBytes holds under load)`
        : `confidence ${cost.heapConfidence ?? 'unknown'} below heapMinConfidence ${rule.heapMinConfidence}`;
    unjudged.push({ metric: BUDGET_METRICS.heapDeltaBytes, reason });
  } else if (limits.heapDeltaBytes !== undefined && cost.heapDeltaBytes === undefined) {
    unjudged.push({ metric: BUDGET_METRICS.heapDeltaBytes, reason: 'no heap figure in the cost record' });
  }
  if (limits.allocatedBytes !== undefined && judgedAllocation(cost) === undefined) {
    unjudged.push({
      metric: BUDGET_METRICS.allocatedBytes,
      reason: 'not measured (no cost.memory figure: memory attribution off, the route not measured yet, or no request-budget SDK in the service)',
    });
  }
  if (limits.dbBytes !== undefined && cost.dbBytes === undefined) {
    unjudged.push({ metric: BUDGET_METRICS.dbBytes, reason: 'not measured (a query went through a driver that does not report result bytes)' });
  }
  return unjudged;
}

/** `heap.delta_bytes: 8 requests in flight`: how unjudged limits are written in `budget.unjudged`. */
export function formatUnjudged(unjudged: UnjudgedLimit): string {
  return `${unjudged.metric}: ${unjudged.reason}`;
}

function heapTrusted(cost: CostRecord, rule: ResolvedRule): boolean {
  return CONFIDENCE_ORDER[cost.heapConfidence ?? 'low'] >= CONFIDENCE_ORDER[rule.heapMinConfidence];
}

/**
 * The memory figure a request is judged on: its own allocation is a lower bound (a collection
 * inside it may not be accounted yet), its route's estimate the mean over recent requests with
 * every collection accounted. Over the limit by either is over the limit.
 */
function judgedAllocation(cost: CostRecord): number | undefined {
  const own = cost.allocatedBytes;
  const estimate = cost.allocatedEstimateBytes;
  if (own === undefined) return estimate;
  return estimate === undefined || own >= estimate ? own : estimate;
}

/** `db.queries 41>10`: how violations are written in `budget.violations`. */
export function formatViolation(violation: Violation): string {
  return `${violation.metric} ${formatNumber(violation.value)}>${formatNumber(violation.limit)}`;
}

/** Reads a cost record from a root span's attributes (as written by cost attribution). */
export function costRecordFromAttributes(attributes: AttributeMap, durationMs: number): CostRecord {
  const int = (name: string) => {
    const value = attributes[name];
    return typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : 0;
  };
  const statement = attributes[COST_DB_REPEATED_STATEMENT];
  const confidence = attributes[COST_HEAP_CONFIDENCE];
  const heap = attributes[COST_HEAP_DELTA_BYTES];
  return {
    durationMs,
    queries: int(COST_DB_QUERIES),
    dbTimeMs: int(COST_DB_TIME_MS),
    rows: int(COST_DB_ROWS),
    repeatedCount: int(COST_DB_REPEATED_COUNT),
    ...(typeof statement === 'string' ? { repeatedStatement: statement } : {}),
    ...(typeof heap === 'number' || typeof heap === 'bigint' ? { heapDeltaBytes: Number(heap) } : {}),
    ...(confidence === 'high' || confidence === 'medium' || confidence === 'low' ? { heapConfidence: confidence } : {}),
    ...optionalNumber('heapInFlight', attributes[COST_HEAP_IN_FLIGHT]),
    ...optionalNumber('allocatedBytes', attributes[COST_MEMORY_ALLOCATED_BYTES]),
    ...optionalNumber('allocatedEstimateBytes', attributes[COST_MEMORY_ROUTE_ESTIMATE_BYTES]),
    ...optionalNumber('dbBytes', attributes[COST_DB_BYTES]),
    httpClientCalls: int(COST_HTTP_CLIENT_CALLS),
    httpClientUntimed: int(COST_HTTP_CLIENT_UNTIMED),
    ...(attributes[COST_JOBS_ENQUEUED] !== undefined ? { jobsEnqueued: int(COST_JOBS_ENQUEUED) } : {}),
  };
}

function optionalNumber<Key extends keyof CostRecord>(key: Key, value: unknown): Partial<Record<Key, number>> {
  return typeof value === 'number'
    ? ({ [key]: value } as Partial<Record<Key, number>>)
    : typeof value === 'bigint'
      ? ({ [key]: Number(value) } as Partial<Record<Key, number>>)
      : {};
}

/**
 * The most repeated statement that the rule does not allow. With only the top statement known
 * and allowed, nothing is judged: the next one's count is unknown, and a guess would be a false
 * positive.
 */
function repeatedNotAllowed(cost: CostRecord, allowRepeated: readonly string[]): RepeatedStatement | undefined {
  const isAllowed = allowedRepeatsMatcher(allowRepeated);
  if (cost.statements !== undefined) return cost.statements.find((statement) => !isAllowed(statement.fingerprint));
  if (cost.repeatedStatement === undefined) return undefined;
  return isAllowed(cost.repeatedStatement) ? undefined : { fingerprint: cost.repeatedStatement, count: cost.repeatedCount };
}

// A rule's allowRepeated list is one array for the rule's lifetime: its patterns are compiled
// the first time it is judged, not on every request.
const compiledAllowLists = new WeakMap<readonly string[], (fingerprint: string) => boolean>();

function allowedRepeatsMatcher(allowRepeated: readonly string[]): (fingerprint: string) => boolean {
  if (allowRepeated.length === 0) return () => false;
  let matcher = compiledAllowLists.get(allowRepeated);
  if (matcher === undefined) {
    const patterns = allowRepeated.map((pattern) => compileGlob(pattern));
    matcher = (fingerprint) => patterns.some((matches) => matches(fingerprint));
    compiledAllowLists.set(allowRepeated, matcher);
  }
  return matcher;
}

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}
