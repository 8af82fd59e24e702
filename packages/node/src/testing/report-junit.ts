/**
 * The gate's report as JUnit XML, for CI systems that show test results from it: one test case
 * per route and test observed (failed when it regressed or exceeded the budget file), one per
 * new entry (failed in check mode).
 */
import { sortedKeys, type Finding } from './baseline';
import type { GateResult } from './gate-result';

export function junitReport(result: GateResult): string {
  const failures = new Map<string, Finding[]>();
  const key = (route: string, test: string) => `${route}\u0000${test}`;
  const failing = result.mode === 'accept' ? result.budgetViolations : [...result.comparison.regressions, ...result.budgetViolations];
  for (const finding of failing) {
    const list = failures.get(key(finding.route, finding.test)) ?? [];
    list.push(finding);
    failures.set(key(finding.route, finding.test), list);
  }
  const cases = new Map<string, string>();
  const added = new Set(result.comparison.added.map((entry) => key(entry.route, entry.test)));
  for (const entry of result.observed) cases.set(key(entry.route, entry.test), '');
  const lines: string[] = [];
  let failed = 0;
  for (const id of sortedKeys(Object.fromEntries(cases))) {
    const [route, test] = id.split('\u0000') as [string, string];
    const found = failures.get(id) ?? [];
    const isNewFailure = result.mode === 'check' && added.has(id);
    const open = `    <testcase classname="${xml(route)}" name="${xml(test)}"`;
    if (found.length === 0 && !isNewFailure) {
      lines.push(`${open}/>`);
      continue;
    }
    failed += 1;
    const message = isNewFailure && found.length === 0 ? 'not in the baseline' : found.map(describe).join('; ');
    const body =
      isNewFailure && found.length === 0
        ? 'Record it with REQUEST_BUDGET_BASELINE_UPDATE=1.'
        : found.map((finding) => `${describe(finding)}${finding.statement !== undefined ? `\n  ${finding.statement}` : ''}`).join('\n');
    lines.push(`${open}>`, `      <failure message="${xml(message)}" type="request-budget">${xml(body)}</failure>`, '    </testcase>');
  }
  const total = cases.size;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="request-budget" tests="${total}" failures="${failed}">`,
    `  <testsuite name="request-budget baseline ${xml(result.baselinePath)}" tests="${total}" failures="${failed}">`,
    ...lines,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

function describe(finding: Finding): string {
  return `${finding.figure} ${finding.before ?? '—'} → ${finding.after}`;
}

// Characters XML 1.0 cannot hold at all.
// eslint-disable-next-line no-control-regex -- XML 1.0 allows tab, LF and CR of the control characters: the class names them to keep them
const NOT_XML_CHAR = /[^\u0009\u000A\u000D\u0020-\uD7FF\uE000-\uFFFD]/g;

function xml(text: string): string {
  return text.replace(NOT_XML_CHAR, '').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
