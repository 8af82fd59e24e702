/**
 * What the end-of-run gate found: the baseline comparison, the budget-file check, and what was
 * written. The reports (Markdown, JUnit XML) are views of it.
 */
import type { BaselineMode, Comparison, EntryRef, Finding } from './baseline';

export interface GateResult {
  readonly baselinePath: string;
  readonly mode: BaselineMode;
  /** There was no baseline file before this run. */
  readonly baselineMissing: boolean;
  readonly comparison: Comparison;
  /** Set when the run was checked against a budget file. */
  readonly budgetPath: string | undefined;
  /** Limits of the budget file exceeded (`before` is the limit). */
  readonly budgetViolations: readonly Finding[];
  /** What happened to the baseline file. */
  readonly baselineWrite: 'unchanged' | 'written' | 'created';
  /** Set when the budget file was rewritten from this run. */
  readonly budgetsWritten: string | undefined;
  /** Whether the run fails. */
  readonly failed: boolean;
  /** Routes and tests this run observed, sorted. */
  readonly observed: readonly EntryRef[];
}

/**
 * New routes and tests fail only a check run: an update run records them. Regressions fail every
 * run but an `accept` one, the explicit update that takes them into the baseline.
 */
export function gateFails(result: Pick<GateResult, 'mode' | 'comparison' | 'budgetViolations'>): boolean {
  if (result.budgetViolations.length > 0) return true;
  if (result.mode === 'accept') return false;
  return result.comparison.regressions.length > 0 || (result.mode === 'check' && result.comparison.added.length > 0);
}
