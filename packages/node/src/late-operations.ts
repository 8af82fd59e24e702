/**
 * Late operations: a query or outgoing call that ends after its request's response (an
 * un-awaited write, a pool warming up, work started in a timer). The cost record was written
 * when the request's root span ended, so they cannot be part of it; rather than vanish, each is
 * marked on its span by CostSpanProcessor, and counted per route by the metrics and the summary.
 */
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { fingerprintStatement, routeOf, type CostContribution } from '@request-budget/core';

/** An operation that ended after the root it was attributed to. */
export interface LateOperation {
  /** The request's (or job's) root span, ended. */
  readonly root: ReadableSpan;
  readonly contribution: CostContribution;
}

/** Kind label of a late operation, as in the metric `request_budget.late_operations{kind}`. */
export type LateOperationKind = CostContribution['type'];

const LATE = Symbol('request-budget.late-operation');
type Marked = { [LATE]?: LateOperation };

/** Marks an ended span as a late operation of `root` (CostSpanProcessor, before the others see it). */
export function markLateOperation(span: ReadableSpan, root: ReadableSpan, contribution: CostContribution): void {
  (span as ReadableSpan & Marked)[LATE] = { root, contribution };
}

/** The late operation the span reports, if CostSpanProcessor marked it as one. */
export function lateOperationOf(span: ReadableSpan): LateOperation | undefined {
  return (span as ReadableSpan & Marked)[LATE];
}

export interface LateOperationLinesOptions {
  /** Shortest time between two lines for one route and kind; more in between are summed. @default 10000 */
  readonly intervalMs?: number;
  /** Routes and kinds tracked at once; further ones are counted as dropped. @default 500 */
  readonly maxKeys?: number;
  /** @default Date.now */
  readonly now?: () => number;
}

interface Pending {
  readonly route: string;
  readonly kind: LateOperationKind;
  count: number;
  example: string | undefined;
  lastWrittenAt: number | undefined;
}

const PREVIEW_CHARS = 120;

/**
 * Summary lines for late operations, at most one per route and kind every `intervalMs`:
 *
 *   request-budget: late: GET /after-response +1 query after the response (SELECT ? AS late)
 *   request-budget: late: POST /orders +37 queries after the response in the last 10s (INSERT INTO audit …)
 */
export class LateOperationLines {
  private readonly intervalMs: number;
  private readonly maxKeys: number;
  private readonly now: () => number;
  private readonly pending = new Map<string, Pending>();
  private dropped = 0;

  constructor(options: LateOperationLinesOptions = {}) {
    this.intervalMs = options.intervalMs ?? 10_000;
    this.maxKeys = options.maxKeys ?? 500;
    this.now = options.now ?? Date.now;
  }

  record(late: LateOperation): void {
    const route = routeOf(late.root.attributes).label;
    const kind = late.contribution.type;
    const key = `${kind}\u0000${route}`;
    let entry = this.pending.get(key);
    if (entry === undefined) {
      if (this.pending.size >= this.maxKeys) {
        this.dropped += 1;
        return;
      }
      entry = { route, kind, count: 0, example: undefined, lastWrittenAt: undefined };
      this.pending.set(key, entry);
    }
    entry.count += 1;
    if (entry.example === undefined && late.contribution.type === 'db') entry.example = preview(fingerprintStatement(late.contribution.statement));
  }

  /** Lines due now (all of them with `all`), each ending in a newline. */
  take(all = false): string {
    const now = this.now();
    let text = '';
    for (const [key, entry] of this.pending) {
      if (entry.count === 0) {
        // Forgotten once quiet for a whole interval: the map holds active routes only.
        if (entry.lastWrittenAt === undefined || now - entry.lastWrittenAt >= this.intervalMs) this.pending.delete(key);
        continue;
      }
      const since = entry.lastWrittenAt;
      if (!all && since !== undefined && now - since < this.intervalMs) continue;
      text += formatLateLine(entry, since === undefined ? undefined : now - since);
      entry.count = 0;
      entry.example = undefined;
      entry.lastWrittenAt = now;
    }
    if (this.dropped > 0) {
      text += `request-budget: late: ${this.dropped} more late operations on other routes not shown (more than ${this.maxKeys} routes at once)\n`;
      this.dropped = 0;
    }
    return text;
  }

  /** Milliseconds until held counts are due, or undefined when nothing is held. */
  nextDueInMs(): number | undefined {
    const now = this.now();
    let next: number | undefined;
    for (const entry of this.pending.values()) {
      if (entry.count === 0) continue;
      const due = entry.lastWrittenAt === undefined ? 0 : Math.max(0, entry.lastWrittenAt + this.intervalMs - now);
      next = next === undefined ? due : Math.min(next, due);
    }
    return next;
  }
}

function formatLateLine(entry: Pending, sinceMs: number | undefined): string {
  const noun = entry.kind === 'db' ? (entry.count === 1 ? 'query' : 'queries') : entry.count === 1 ? 'HTTP call' : 'HTTP calls';
  const window = sinceMs === undefined ? '' : ` in the last ${Math.round(sinceMs / 1000)}s`;
  const example = entry.example === undefined ? '' : ` (${entry.example})`;
  const after = entry.route.startsWith('job ') ? 'after the job ended' : 'after the response';
  return `request-budget: late: ${entry.route} +${entry.count} ${noun} ${after}${window}${example}\n`;
}

function preview(statement: string): string {
  return statement.length > PREVIEW_CHARS ? `${statement.slice(0, PREVIEW_CHARS - 1)}…` : statement;
}
