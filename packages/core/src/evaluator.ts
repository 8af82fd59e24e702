/**
 * Judges one request's (or job's) cost record against the rule that applies to it. Pure: the
 * in-process span processor and the collector call it on the same attribute maps.
 */
import {
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
  const heapTrusted = CONFIDENCE_ORDER[cost.heapConfidence ?? 'low'] >= CONFIDENCE_ORDER[rule.heapMinConfidence];
  if (heapTrusted) check('heapDeltaBytes', cost.heapDeltaBytes);
  check('durationMs', cost.durationMs);
  check('httpClientCalls', cost.httpClientCalls);
  check('untimedHttpCalls', cost.httpClientUntimed);
  check('enqueuedJobs', cost.jobsEnqueued);
  return violations;
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
    httpClientCalls: int(COST_HTTP_CLIENT_CALLS),
    httpClientUntimed: int(COST_HTTP_CLIENT_UNTIMED),
    ...(attributes[COST_JOBS_ENQUEUED] !== undefined ? { jobsEnqueued: int(COST_JOBS_ENQUEUED) } : {}),
  };
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
