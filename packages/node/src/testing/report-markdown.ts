/**
 * The gate's report in GitHub-flavoured Markdown: for a pull-request comment, the CI job summary
 * ($GITHUB_STEP_SUMMARY), and the terminal (its tables read fine as plain text).
 */
import type { Finding } from './baseline';
import type { GateResult } from './gate-result';

const UPDATE_HINT = 'REQUEST_BUDGET_BASELINE_UPDATE=1';

/** The whole report. */
export function markdownReport(result: GateResult): string {
  const { comparison } = result;
  const sections: string[] = [`## request-budget: per-route baseline`, '', summaryLine(result)];
  if (comparison.regressions.length > 0)
    sections.push('', result.mode === 'accept' ? '### Regressions (accepted into the baseline)' : '### Regressions', '', findingsTable(comparison.regressions));
  if (result.budgetViolations.length > 0)
    sections.push('', `### Over the budget file ${code(result.budgetPath ?? '')}`, '', findingsTable(result.budgetViolations, 'limit → observed'));
  if (comparison.added.length > 0) {
    const note = result.mode === 'check' ? `not in the baseline: record them with ${code(UPDATE_HINT)}` : 'added to the baseline';
    sections.push('', `### New routes and tests (${note})`, '', addedTable(result));
  }
  if (comparison.improvements.length > 0) {
    const note = result.mode === 'check' ? `lock the gain in with ${code(UPDATE_HINT)}` : 'the baseline was tightened';
    sections.push('', `### Cheaper (${note})`, '', findingsTable(comparison.improvements));
  }
  if (comparison.unexercised.length > 0) {
    sections.push(
      '',
      '### In the baseline, not exercised by this run',
      '',
      ...comparison.unexercised.map((entry) => `- ${cell(entry.route)} — ${cell(entry.test)}`),
    );
  }
  return `${sections.join('\n')}\n`;
}

/** One line: the verdict, counts, the file and the mode. */
export function summaryLine(result: GateResult): string {
  const { comparison } = result;
  const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
  const routes = new Set(comparison.regressions.map((finding) => finding.route)).size;
  const parts = [
    `${count(comparison.regressions.length, 'regression')}${comparison.regressions.length > 0 ? ` on ${count(routes, 'route')}` : ''}`,
    `${count(comparison.improvements.length, 'improvement')}`,
    `${count(comparison.added.length, 'new entry', 'new entries')}`,
  ];
  if (result.budgetPath !== undefined) parts.push(count(result.budgetViolations.length, 'budget violation'));
  const write = result.baselineWrite === 'created' ? ', baseline created' : result.baselineWrite === 'written' ? ', baseline updated' : '';
  const budgets = result.budgetsWritten !== undefined ? `, budgets written to ${code(result.budgetsWritten)}` : '';
  return `**${result.failed ? 'Failed' : 'Passed'}**: ${parts.join(', ')} (${count(result.observed.length, 'route and test', 'routes and tests')} observed; baseline ${code(result.baselinePath)}, ${result.mode} mode${write}${budgets}).`;
}

/** route | test | figure | before → after | statement */
export function findingsTable(findings: readonly Finding[], heading = 'before → after'): string {
  const rows = findings.map(
    (finding) =>
      `| ${cell(finding.route)} | ${cell(finding.test)} | ${cell(finding.figure)} | ${finding.before ?? '—'} → ${finding.after} | ${finding.statement === undefined ? '' : code(finding.statement)} |`,
  );
  return ['| route | test | figure | ' + heading + ' | statement |', '| --- | --- | --- | --- | --- |', ...rows].join('\n');
}

function addedTable(result: GateResult): string {
  const rows = result.comparison.added.map(
    ({ route, test, figures }) =>
      `| ${cell(route)} | ${cell(test)} | ${figures.queries} | ${figures.repeated} | ${figures.rows} | ${figures.untimedHttpCalls} |`,
  );
  return ['| route | test | queries | repeated | rows | untimed HTTP calls |', '| --- | --- | --- | --- | --- | --- |', ...rows].join('\n');
}

/** Table cells cannot hold a pipe or a line break. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function code(text: string): string {
  const escaped = cell(text);
  return escaped.includes('`') ? `\`\` ${escaped} \`\`` : `\`${escaped}\``;
}
