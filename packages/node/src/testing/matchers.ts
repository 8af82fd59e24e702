/**
 * Budget assertions on a measured cost: `toBeWithinBudget` for vitest and jest (`expect.extend`),
 * and the plain functions node:test's helpers use. The same limits as a budget file's rule.
 *
 * Totals (queries, rows, calls) are judged over everything the measured code caused; the N+1
 * limit (repeatedQueries) per request, as production judges it: two requests that each run a
 * statement once are not a repeat.
 */
import {
  BUDGET_METRICS,
  evaluateBudget,
  formatViolation,
  LIMIT_NAMES,
  parseByteSize,
  type CostRecord,
  type HeapConfidence,
  type LimitName,
  type ResolvedRule,
  type Violation,
} from '@request-budget/core';
import type { CostPart } from './cost-part';
import type { MeasuredCost } from './measure';

/** Limits as a budget file writes them (sizes may be `8MiB`), plus the rule settings. */
export type BudgetLimits = Partial<Record<Exclude<LimitName, 'heapDeltaBytes'>, number>> & {
  heapDeltaBytes?: number | string;
  heapMinConfidence?: HeapConfidence;
  allowRepeated?: string[];
};

/** Every limit the cost exceeds, in the budget file's order. */
export function budgetViolations(cost: MeasuredCost | CostRecord, limits: BudgetLimits): Violation[] {
  const rule = ruleFrom(limits);
  const parts = partsOf(cost);
  if (parts === undefined) return evaluateBudget(cost, rule);
  const { repeatedQueries, ...totals } = rule.limits;
  const violations = evaluateBudget({ ...cost, repeatedCount: 0, statements: [] }, { ...rule, limits: totals });
  if (repeatedQueries !== undefined) {
    const repeatRule = { ...rule, limits: { repeatedQueries } };
    const worst = parts
      .flatMap((part) => evaluateBudget(part, repeatRule))
      .reduce<Violation | undefined>((best, violation) => (best === undefined || violation.value > best.value ? violation : best), undefined);
    if (worst !== undefined) violations.push(worst);
  }
  const order = LIMIT_NAMES.map((name) => BUDGET_METRICS[name]);
  return violations.sort((a, b) => order.indexOf(a.metric) - order.indexOf(b.metric));
}

/** The failure message: the violations, every statement, and each request with its route. */
export function describeBudgetFailure(cost: MeasuredCost | CostRecord, limits: BudgetLimits, violations: readonly Violation[]): string {
  return [
    `cost exceeded the budget ${JSON.stringify(limits)}:`,
    ...violations.map((v) => `  ${formatViolation(v)}`),
    describeStatements(cost),
    ...describeRequests(cost),
  ].join('\n');
}

/** One line of figures, for the message of a negated assertion. */
export function describeCost(cost: CostRecord): string {
  return `queries=${cost.queries} db=${cost.dbTimeMs}ms rows=${cost.rows} repeated=${cost.repeatedCount} http=${cost.httpClientCalls} untimed=${cost.httpClientUntimed}`;
}

/** `expect.extend(budgetMatchers)` adds `toBeWithinBudget(limits)` (vitest or jest). */
export const budgetMatchers = {
  toBeWithinBudget(received: MeasuredCost, limits: BudgetLimits) {
    if (received === null || typeof received !== 'object' || typeof (received as Partial<CostRecord>).queries !== 'number') {
      return {
        pass: false,
        message: () =>
          `toBeWithinBudget expects the result of \`await measureCost(fn)\`, got ${typeof received === 'object' ? JSON.stringify(received) : String(received)} (was measureCost awaited?)`,
      };
    }
    const violations = budgetViolations(received, limits);
    const pass = violations.length === 0;
    return {
      pass,
      message: () =>
        pass
          ? `expected the cost to exceed ${JSON.stringify(limits)}, but it stayed within it (${describeCost(received)})`
          : describeBudgetFailure(received, limits, violations),
    };
  },
};

/**
 * The matcher's type, for TypeScript users to add to their test framework's assertions:
 *
 *   declare module 'vitest' {  // vitest 5
 *     interface Matchers<R extends void | Promise<void> = void | Promise<void>, T = unknown> extends BudgetMatchers<R> {}
 *   }
 *   declare global { namespace jest { interface Matchers<R> extends BudgetMatchers<R> {} } }  // jest
 */
export interface BudgetMatchers<R = unknown> {
  /** Passes when the measured cost stays within every limit given. */
  toBeWithinBudget(limits: BudgetLimits): R;
}

function ruleFrom(limits: BudgetLimits): ResolvedRule {
  const { heapDeltaBytes, heapMinConfidence, allowRepeated, ...counts } = limits;
  const heap = heapDeltaBytes === undefined ? undefined : parseByteSize(heapDeltaBytes);
  if (heapDeltaBytes !== undefined && heap === undefined)
    throw new Error(`toBeWithinBudget: heapDeltaBytes ${JSON.stringify(heapDeltaBytes)} is not a byte size such as 512KiB or 8MiB`);
  const unknown = Object.keys(counts).filter((name) => !(LIMIT_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0)
    throw new Error(`toBeWithinBudget: unknown limit ${unknown.map((name) => JSON.stringify(name)).join(', ')} (expected ${LIMIT_NAMES.join(', ')})`);
  return {
    name: 'toBeWithinBudget',
    limits: { ...counts, ...(heap !== undefined ? { heapDeltaBytes: heap } : {}) },
    severity: 'warning',
    heapMinConfidence: heapMinConfidence ?? 'medium',
    allowRepeated: allowRepeated ?? [],
  };
}

function partsOf(cost: MeasuredCost | CostRecord): CostPart[] | undefined {
  const measured = cost as Partial<MeasuredCost>;
  return measured.direct !== undefined && measured.requests !== undefined ? [measured.direct, ...measured.requests] : undefined;
}

function describeStatements(cost: MeasuredCost | CostRecord): string {
  const statements = cost.statements ?? [];
  if (statements.length === 0) return 'statements: none';
  return `statements (${cost.queries} queries):\n${statements.map((s) => `  ${s.count}× ${s.fingerprint}`).join('\n')}`;
}

function describeRequests(cost: MeasuredCost | CostRecord): string[] {
  const requests = (cost as Partial<MeasuredCost>).requests ?? [];
  if (requests.length === 0) return [];
  return [
    `requests (${requests.length}):`,
    ...requests.map(
      (request) =>
        `  ${request.route}${request.status !== undefined ? ` ${request.status}` : ''}: ${request.queries} ${request.queries === 1 ? 'query' : 'queries'}` +
        `${request.repeatedCount > 1 ? `, ${request.repeatedCount}× ${request.repeatedStatement}` : ''}`,
    ),
  ];
}
