/**
 * Assertions for node:test (or any runner without `expect.extend`): they throw node's
 * AssertionError, which every runner reports as a failed assertion.
 *
 *   import { assertCost } from '@request-budget/node/testing';
 *   test('lists orders in 2 queries', async () => {
 *     await assertCost(() => fetch(`${base}/users-with-orders`), { queries: 2, repeatedQueries: 1 });
 *   });
 */
import { AssertionError } from 'node:assert';
import type { CostRecord } from '@request-budget/core';
import { budgetViolations, describeBudgetFailure, type BudgetLimits } from './matchers';
import { measureCost, type MeasureOptions, type MeasuredCost } from './measure';

/** Throws an AssertionError listing the violations when `cost` exceeds `limits`. */
export function assertWithinBudget(cost: MeasuredCost | CostRecord, limits: BudgetLimits, message?: string): void {
  const violations = budgetViolations(cost, limits);
  if (violations.length === 0) return;
  const details = describeBudgetFailure(cost, limits, violations);
  throw new AssertionError({
    message: message === undefined ? details : `${message}\n${details}`,
    actual: figures(cost),
    expected: limits,
    operator: 'withinBudget',
    stackStartFn: assertWithinBudget,
  });
}

/** Measures `fn` and asserts its cost is within `limits`; returns the cost for further checks. */
export async function assertCost(fn: () => unknown, limits: BudgetLimits, options: MeasureOptions & { message?: string } = {}): Promise<MeasuredCost> {
  const cost = await measureCost(fn, options);
  const violations = budgetViolations(cost, limits);
  if (violations.length > 0) {
    const details = describeBudgetFailure(cost, limits, violations);
    throw new AssertionError({
      message: options.message === undefined ? details : `${options.message}\n${details}`,
      actual: figures(cost),
      expected: limits,
      operator: 'withinBudget',
      stackStartFn: assertCost,
    });
  }
  return cost;
}

/** The figures a budget names, for the assertion's `actual` (the whole cost is in the message). */
function figures(cost: CostRecord): Record<string, number> {
  return {
    queries: cost.queries,
    rows: cost.rows,
    repeatedQueries: cost.repeatedCount,
    httpClientCalls: cost.httpClientCalls,
    untimedHttpCalls: cost.httpClientUntimed,
  };
}
