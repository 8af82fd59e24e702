#!/usr/bin/env node
/**
 * `npx request-budget …`: the CI gate and budget-file tools outside a test runner.
 *
 *   request-budget run [gate options] -- <test command…>   run a test command, then the baseline gate
 *   request-budget check --run-dir <dir> [gate options]     gate what a run recorded into <dir>
 *   request-budget budgets --baseline <file> --check|--write <budgets.yaml>
 *   request-budget lint <budgets.yaml|.json>… [--baseline <file>]…
 *
 * Exit status: 0 passed, 1 failed (a regression, an invalid file, a failing test command), 2 usage.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BudgetFileError, loadBudgetFile } from '@request-budget/core';
import { BaselineFileError, readBaselineFile } from './testing/baseline-file';
import { findingsTable } from './testing/report-markdown';
import { checkAgainstBudgets, writeBudgets } from './testing/budget-sync';
import { finishRun } from './testing/gate';
import { gateSettings, parseTolerance, RUN_DIR_ENV, type GateSettings } from './testing/settings';

const USAGE = `usage:
  request-budget run [gate options] -- <test command…>
      Runs the test command with REQUEST_BUDGET_RUN_DIR set (the runner setups record into it),
      then compares what was recorded with the baseline.
  request-budget check --run-dir <dir> [gate options]
      Compares what a test run recorded into <dir> with the baseline.
  request-budget budgets --baseline <file> (--check <budgets> | --write <budgets>)
      Checks the baseline's per-route figures against a budget file, or writes them into it.
  request-budget lint <budget file>… [--baseline <baseline file>]…
      Validates budget files (and baseline files); every problem with its line.

gate options (default: the environment variable named):
  --baseline <file>          REQUEST_BUDGET_BASELINE (request-budget.baseline.json)
  --update                   tighten the baseline where routes got cheaper, add new ones
  --accept                   take this run's figures, regressions included (an explicit update)
  --rows-tolerance <10%>     REQUEST_BUDGET_ROWS_TOLERANCE (10%)
  --markdown <file>          REQUEST_BUDGET_REPORT_MARKDOWN
  --junit <file>             REQUEST_BUDGET_REPORT_JUNIT
  --budgets-check <file>     REQUEST_BUDGET_BUDGETS_CHECK
  --budgets-write <file>     REQUEST_BUDGET_BUDGETS_WRITE
`;

const GATE_OPTIONS = {
  baseline: { type: 'string' },
  update: { type: 'boolean' },
  accept: { type: 'boolean' },
  'rows-tolerance': { type: 'string' },
  markdown: { type: 'string' },
  junit: { type: 'string' },
  'budgets-check': { type: 'string' },
  'budgets-write': { type: 'string' },
  'run-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

class UsageError extends Error {}

/** Runs the CLI; resolves with the exit status. */
export async function main(
  argv: readonly string[],
  out: (text: string) => void = (text) => process.stdout.write(text),
  err: (text: string) => void = (text) => process.stderr.write(text),
): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await run(rest, err);
      case 'check':
        return check(rest, err);
      case 'budgets':
        return budgets(rest, out, err);
      case 'lint':
        return lint(rest, out, err);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      err(`request-budget: ${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof BudgetFileError || error instanceof BaselineFileError) {
      err(`request-budget: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

function gateOptions(values: { [K in keyof typeof GATE_OPTIONS]?: string | boolean | undefined }): GateSettings {
  const settings = gateSettings();
  if (values.update === true && values.accept === true) throw new UsageError('--update and --accept exclude each other');
  const path = (value: string | boolean | undefined) => (typeof value === 'string' ? resolve(value) : undefined);
  return {
    ...settings,
    baselinePath: path(values.baseline) ?? settings.baselinePath,
    mode: values.accept === true ? 'accept' : values.update === true ? 'tighten' : settings.mode,
    rowsTolerance: typeof values['rows-tolerance'] === 'string' ? parseTolerance(values['rows-tolerance']) : settings.rowsTolerance,
    markdownPath: path(values.markdown) ?? settings.markdownPath,
    junitPath: path(values.junit) ?? settings.junitPath,
    budgetsCheckPath: path(values['budgets-check']) ?? settings.budgetsCheckPath,
    budgetsWritePath: path(values['budgets-write']) ?? settings.budgetsWritePath,
  };
}

async function run(args: readonly string[], err: (text: string) => void): Promise<number> {
  const split = args.indexOf('--');
  if (split < 0 || split === args.length - 1) throw new UsageError('run needs the test command after --');
  const { values } = parseArgs({ args: args.slice(0, split), options: GATE_OPTIONS, strict: true });
  const settings = gateOptions(values);
  const [command, ...commandArgs] = args.slice(split + 1) as [string, ...string[]];
  const runDir = mkdtempSync(join(tmpdir(), 'request-budget-run-'));
  const status = await new Promise<number>((done) => {
    const child = spawn(command, commandArgs, { stdio: 'inherit', env: { ...process.env, [RUN_DIR_ENV]: runDir }, shell: process.platform === 'win32' });
    child.once('error', (error) => {
      err(`request-budget: could not run ${command}: ${error.message}\n`);
      done(127);
    });
    child.once('close', (code, signal) => done(code ?? (signal !== null ? 128 : 1)));
  });
  const gateFailed = finishRun(runDir, settings, err);
  return status !== 0 ? status : gateFailed ? 1 : 0;
}

function check(args: readonly string[], err: (text: string) => void): number {
  const { values } = parseArgs({ args: [...args], options: GATE_OPTIONS, strict: true });
  const runDir = values['run-dir'] ?? process.env[RUN_DIR_ENV];
  if (runDir === undefined) throw new UsageError(`check needs --run-dir (or ${RUN_DIR_ENV})`);
  return finishRun(resolve(runDir), gateOptions(values), err) ? 1 : 0;
}

function budgets(args: readonly string[], out: (text: string) => void, err: (text: string) => void): number {
  const { values } = parseArgs({
    args: [...args],
    options: { baseline: { type: 'string' }, check: { type: 'string' }, write: { type: 'string' } },
    strict: true,
  });
  const baselinePath = resolve(values.baseline ?? gateSettings().baselinePath);
  if ((values.check === undefined) === (values.write === undefined))
    throw new UsageError('budgets needs one of --check <budget file> or --write <budget file>');
  const table = readBaselineFile(baselinePath);
  if (table === undefined) {
    err(`request-budget: no baseline at ${baselinePath}\n`);
    return 1;
  }
  if (values.write !== undefined) {
    writeBudgets(table, resolve(values.write));
    out(`request-budget: wrote the per-route limits of ${baselinePath} into ${resolve(values.write)}\n`);
    return 0;
  }
  const violations = checkAgainstBudgets(table, resolve(values.check!));
  if (violations.length === 0) {
    out(`request-budget: every route of ${baselinePath} is within ${resolve(values.check!)}\n`);
    return 0;
  }
  err(
    `request-budget: ${violations.length} figure${violations.length === 1 ? '' : 's'} of ${baselinePath} over ${resolve(values.check!)}:\n\n${findingsTable(violations, 'limit → observed')}\n`,
  );
  return 1;
}

function lint(args: readonly string[], out: (text: string) => void, err: (text: string) => void): number {
  const { values, positionals } = parseArgs({
    args: [...args],
    options: { baseline: { type: 'string', multiple: true } },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length === 0 && (values.baseline ?? []).length === 0) throw new UsageError('lint needs a budget file (or --baseline <file>)');
  let failed = false;
  for (const file of positionals) {
    try {
      const budgets = loadBudgetFile(file);
      out(
        `${file}: ok (${budgets.routes.length} route rule${budgets.routes.length === 1 ? '' : 's'}, ${budgets.jobs.length} job rule${budgets.jobs.length === 1 ? '' : 's'})\n`,
      );
    } catch (error) {
      if (!(error instanceof BudgetFileError)) throw error;
      failed = true;
      for (const problem of error.problems) err(`${problem}\n`);
    }
  }
  for (const file of values.baseline ?? []) {
    try {
      const table = readBaselineFile(file);
      if (table === undefined) {
        failed = true;
        err(`${file}: no such file\n`);
      } else out(`${file}: ok (${Object.keys(table).length} route${Object.keys(table).length === 1 ? '' : 's'})\n`);
    } catch (error) {
      if (!(error instanceof BaselineFileError)) throw error;
      failed = true;
      for (const problem of error.problems) err(`${file}: ${problem}\n`);
    }
  }
  return failed ? 1 : 0;
}

/** Runs the command with this process's arguments (the `request-budget` bin calls it). */
export function runCommand(): void {
  main(process.argv.slice(2)).then(
    (status) => {
      process.exitCode = status;
    },
    (error: unknown) => {
      process.stderr.write(`request-budget: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}

if (require.main === module) runCommand();
