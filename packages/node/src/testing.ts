/**
 * Test helpers: measure what a piece of code costs and assert it stays within a budget, in the
 * app's own test suite (a CI gate for N+1 regressions). Import from
 * `@request-budget/node/testing`; nothing here is loaded by production code.
 *
 *   import { budgetMatchers, measureCost } from '@request-budget/node/testing';
 *   expect.extend(budgetMatchers);
 *   expect(await measureCost(() => listOrders(userId))).toBeWithinBudget({ queries: 3 });
 *
 * The test process must run request-budget with the database driver instrumented: start() in a
 * setup file before the driver is loaded, or `--require @request-budget/node/register`.
 */
import { context, trace } from '@opentelemetry/api';
import { hrTimeToMilliseconds } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import {
  COST_DB_QUERIES,
  costRecordFromAttributes,
  evaluateBudget,
  formatViolation,
  parseByteSize,
  type CostRecord,
  type HeapConfidence,
  type LimitName,
  type RepeatedStatement,
  type ResolvedRule,
} from '@request-budget/core';
import { MEASUREMENT_ATTRIBUTE } from './budget-span-processor';
import { costStatementsOf, ROOT_MARKER_ATTRIBUTE } from './cost-span-processor';

/** The cost of the measured code, with every statement it ran. */
export interface MeasuredCost extends CostRecord {
  readonly statements: readonly RepeatedStatement[];
}

/** Limits as a budget file writes them (sizes may be `8MiB`), plus the rule settings. */
export type BudgetLimits = Partial<Record<Exclude<LimitName, 'heapDeltaBytes'>, number>> & {
  heapDeltaBytes?: number | string;
  heapMinConfidence?: HeapConfidence;
  allowRepeated?: string[];
};

/**
 * Runs `fn` inside a root span of its own and returns its cost record. Rejects with fn's error
 * if it throws, and with an explanation if request-budget is not running in this process.
 */
export async function measureCost(fn: () => unknown): Promise<MeasuredCost> {
  const tracer = trace.getTracer('@request-budget/node/testing');
  const span = tracer.startSpan('measureCost', { attributes: { [ROOT_MARKER_ATTRIBUTE]: true, [MEASUREMENT_ATTRIBUTE]: true } });
  try {
    await context.with(trace.setSpan(context.active(), span), fn);
  } finally {
    span.end();
  }
  const measured = span as unknown as Partial<ReadableSpan>;
  if (measured.attributes?.[COST_DB_QUERIES] === undefined || measured.duration === undefined) {
    throw new Error(
      'measureCost: request-budget is not running in this process. Call start() from @request-budget/node in a test setup file (before the database driver is loaded), or run the tests with --require @request-budget/node/register.',
    );
  }
  const durationMs = hrTimeToMilliseconds(measured.duration);
  return { ...costRecordFromAttributes(measured.attributes, durationMs), statements: costStatementsOf(span) ?? [] };
}

/** `expect.extend(budgetMatchers)` adds `toBeWithinBudget(limits)` (vitest or jest). */
export const budgetMatchers = {
  toBeWithinBudget(received: MeasuredCost, limits: BudgetLimits) {
    const rule = ruleFrom(limits);
    const violations = evaluateBudget(received, rule);
    const pass = violations.length === 0;
    return {
      pass,
      message: () =>
        pass
          ? `expected the cost to exceed ${JSON.stringify(limits)}, but it stayed within it (${describeCost(received)})`
          : `cost exceeded the budget ${JSON.stringify(limits)}:\n${violations.map((v) => `  ${formatViolation(v)}`).join('\n')}\n${describeStatements(received)}`,
    };
  },
};

function ruleFrom(limits: BudgetLimits): ResolvedRule {
  const { heapDeltaBytes, heapMinConfidence, allowRepeated, ...counts } = limits;
  const heap = heapDeltaBytes === undefined ? undefined : parseByteSize(heapDeltaBytes);
  if (heapDeltaBytes !== undefined && heap === undefined) throw new Error(`toBeWithinBudget: heapDeltaBytes ${JSON.stringify(heapDeltaBytes)} is not a byte size such as 512KiB or 8MiB`);
  return {
    name: 'toBeWithinBudget',
    limits: { ...counts, ...(heap !== undefined ? { heapDeltaBytes: heap } : {}) },
    severity: 'warning',
    heapMinConfidence: heapMinConfidence ?? 'medium',
    allowRepeated: allowRepeated ?? [],
  };
}

function describeCost(cost: MeasuredCost): string {
  return `queries=${cost.queries} db=${cost.dbTimeMs}ms rows=${cost.rows} repeated=${cost.repeatedCount} http=${cost.httpClientCalls}`;
}

function describeStatements(cost: MeasuredCost): string {
  if (cost.statements.length === 0) return 'statements: none';
  return `statements (${cost.queries} queries):\n${cost.statements.map((s) => `  ${s.count}× ${s.fingerprint}`).join('\n')}`;
}

/**
 * The matcher's type, for TypeScript users to add to their test framework's assertions:
 *
 *   declare module 'vitest' {
 *     interface Matchers<R extends void | Promise<void> = void | Promise<void>, T = unknown> extends BudgetMatchers<R> {}
 *   }
 */
export interface BudgetMatchers<R = unknown> {
  /** Passes when the measured cost stays within every limit given. */
  toBeWithinBudget(limits: BudgetLimits): R;
}
