/**
 * The end-of-run gate: merges what the test workers recorded, compares it with the committed
 * baseline, checks it against (or writes it into) the production budget file, writes the
 * reports, updates the baseline in update mode, and says whether the run fails. The runners'
 * global teardowns and the CLI call it.
 */
import { appendFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { compareBaseline, mergeTables, nextBaseline, sameTables, sortedKeys, type EntryRef, type RouteTable } from './baseline';
import { readBaselineFile, writeBaselineFile } from './baseline-file';
import { checkAgainstBudgets, writeBudgets } from './budget-sync';
import { gateFails, type GateResult } from './gate-result';
import { OBSERVATIONS_PREFIX } from './recorder';
import { markdownReport } from './report-markdown';
import { junitReport } from './report-junit';
import type { GateSettings } from './settings';

/** Everything the test workers wrote into the run directory, merged. */
export function readObservations(runDir: string): RouteTable {
  let names: string[];
  try {
    names = readdirSync(runDir).filter((name) => name.startsWith(OBSERVATIONS_PREFIX) && name.endsWith('.json'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw error;
  }
  return mergeTables(names.sort().map((name) => (JSON.parse(readFileSync(join(runDir, name), 'utf8')) as { table: RouteTable }).table));
}

export interface GateOutcome {
  readonly result: GateResult;
  readonly markdown: string;
}

/** Runs the gate on what this run observed. Throws BaselineFileError / BudgetFileError for unusable files. */
export function runGate(observed: RouteTable, settings: GateSettings): GateOutcome {
  const previous = readBaselineFile(settings.baselinePath);
  const baseline = previous ?? {};
  const comparison = compareBaseline(baseline, observed, { rowsTolerance: settings.rowsTolerance });
  const budgetViolations = settings.budgetsCheckPath !== undefined ? checkAgainstBudgets(observed, settings.budgetsCheckPath) : [];
  const next = nextBaseline(baseline, observed, settings.mode);
  let baselineWrite: GateResult['baselineWrite'] = 'unchanged';
  if (settings.mode !== 'check' && (previous === undefined ? Object.keys(next).length > 0 : !sameTables(next, baseline))) {
    writeBaselineFile(settings.baselinePath, next);
    baselineWrite = previous === undefined ? 'created' : 'written';
  }
  // The budget file gets the baseline's figures: never a regression, unless accepted.
  if (settings.budgetsWritePath !== undefined)
    writeBudgets(nextBaseline(baseline, observed, settings.mode === 'accept' ? 'accept' : 'tighten'), settings.budgetsWritePath);
  const observedEntries: EntryRef[] = sortedKeys(observed).flatMap((route) => sortedKeys(observed[route]).map((test) => ({ route, test })));
  const partial = { mode: settings.mode, comparison, budgetViolations };
  const result: GateResult = {
    baselinePath: settings.baselinePath,
    mode: settings.mode,
    baselineMissing: previous === undefined,
    comparison,
    budgetPath: settings.budgetsCheckPath,
    budgetViolations,
    baselineWrite,
    budgetsWritten: settings.budgetsWritePath,
    failed: gateFails(partial),
    observed: observedEntries,
  };
  const markdown = markdownReport(result);
  writeReports(result, markdown, settings);
  return { result, markdown };
}

function writeReports(result: GateResult, markdown: string, settings: GateSettings): void {
  if (settings.markdownPath !== undefined) writeText(settings.markdownPath, markdown);
  if (settings.junitPath !== undefined) writeText(settings.junitPath, junitReport(result));
  if (settings.stepSummaryPath !== undefined) appendFileSync(settings.stepSummaryPath, `${markdown}\n`);
}

function writeText(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/**
 * The end of a test run: gate what the workers recorded into `runDir`, print the report on
 * stderr, remove the run directory. Returns whether the run must fail.
 */
export function finishRun(runDir: string, settings: GateSettings, write: (text: string) => void = (text) => process.stderr.write(text)): boolean {
  try {
    const observed = readObservations(runDir);
    if (Object.keys(observed).length === 0) {
      write(
        'request-budget: the CI baseline gate recorded no request in this run. Is the setup file in the test configuration ' +
          "(vitest setupFiles: ['@request-budget/node/vitest'], jest preset '@request-budget/node', node --test --import @request-budget/node/node-test)?\n",
      );
      return readBaselineFile(settings.baselinePath) !== undefined;
    }
    const { markdown, result } = runGate(observed, settings);
    write(`\n${markdown}`);
    return result.failed;
  } catch (error) {
    write(`request-budget: the CI baseline gate could not run: ${error instanceof Error ? error.message : String(error)}\n`);
    return true;
  } finally {
    rmSync(runDir, { recursive: true, force: true });
  }
}
