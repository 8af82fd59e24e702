/**
 * The CI gate's settings, from the environment (the runners' global setups and the CLI read
 * them the same way). A bad value is reported once and the default is used.
 */
import { resolve } from 'node:path';
import { reportProblem } from '../diagnostics';
import type { BaselineMode } from './baseline';

export interface GateSettings {
  /** REQUEST_BUDGET_BASELINE. @default `request-budget.baseline.json` in the working directory */
  readonly baselinePath: string;
  /** REQUEST_BUDGET_BASELINE_UPDATE: unset or 0 → check; 1, true or tighten → tighten; accept → accept. @default check */
  readonly mode: BaselineMode;
  /** REQUEST_BUDGET_ROWS_TOLERANCE: `10%` or `0.1`. @default 0.1 */
  readonly rowsTolerance: number;
  /** REQUEST_BUDGET_REPORT_MARKDOWN: where to write the Markdown report. @default none ($GITHUB_STEP_SUMMARY is appended to when set) */
  readonly markdownPath: string | undefined;
  /** REQUEST_BUDGET_REPORT_JUNIT: where to write the JUnit XML report. @default none */
  readonly junitPath: string | undefined;
  /** GITHUB_STEP_SUMMARY: the job summary the Markdown report is appended to. */
  readonly stepSummaryPath: string | undefined;
  /** REQUEST_BUDGET_BUDGETS_CHECK: a budget file the observed figures must stay within. */
  readonly budgetsCheckPath: string | undefined;
  /** REQUEST_BUDGET_BUDGETS_WRITE: a budget file to write the observed per-route limits into. */
  readonly budgetsWritePath: string | undefined;
}

export const DEFAULT_BASELINE_FILE = 'request-budget.baseline.json';
export const DEFAULT_ROWS_TOLERANCE = 0.1;

/** Environment variable the global setups pass the run directory to test workers in. */
export const RUN_DIR_ENV = 'REQUEST_BUDGET_RUN_DIR';

export function gateSettings(env: Readonly<Record<string, string | undefined>> = process.env, cwd = process.cwd()): GateSettings {
  const path = (name: string) => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : resolve(cwd, value);
  };
  return {
    baselinePath: path('REQUEST_BUDGET_BASELINE') ?? resolve(cwd, DEFAULT_BASELINE_FILE),
    mode: parseMode(env.REQUEST_BUDGET_BASELINE_UPDATE),
    rowsTolerance: parseTolerance(env.REQUEST_BUDGET_ROWS_TOLERANCE),
    markdownPath: path('REQUEST_BUDGET_REPORT_MARKDOWN'),
    junitPath: path('REQUEST_BUDGET_REPORT_JUNIT'),
    stepSummaryPath: path('GITHUB_STEP_SUMMARY'),
    budgetsCheckPath: path('REQUEST_BUDGET_BUDGETS_CHECK'),
    budgetsWritePath: path('REQUEST_BUDGET_BUDGETS_WRITE'),
  };
}

export function parseMode(raw: string | undefined): BaselineMode {
  const value = raw?.trim().toLowerCase() ?? '';
  if (value === '' || value === '0' || value === 'false' || value === 'check') return 'check';
  if (value === '1' || value === 'true' || value === 'tighten') return 'tighten';
  if (value === 'accept') return 'accept';
  reportProblem(`REQUEST_BUDGET_BASELINE_UPDATE=${JSON.stringify(raw)} is not one of 0, 1 (tighten), accept; checking without updating`);
  return 'check';
}

export function parseTolerance(raw: string | undefined): number {
  const value = raw?.trim() ?? '';
  if (value === '') return DEFAULT_ROWS_TOLERANCE;
  const percent = /^(\d+(?:\.\d+)?)\s*%$/.exec(value);
  const number = percent !== null ? Number(percent[1]) / 100 : Number(value);
  if (Number.isFinite(number) && number >= 0) return number;
  reportProblem(`REQUEST_BUDGET_ROWS_TOLERANCE=${JSON.stringify(raw)} is not a fraction (0.1) or a percentage (10%); using ${DEFAULT_ROWS_TOLERANCE * 100}%`);
  return DEFAULT_ROWS_TOLERANCE;
}
