/**
 * One per-route budget for CI and production: the figures the test suite observed (or the
 * committed baseline) checked against the production budget file, or written into it.
 *
 * Written limits are the most one request of the route did in any test: `queries`,
 * `repeatedQueries` and `untimedHttpCalls`. Rows are left to the file's author: test data is
 * not production data. The file is rewritten whole (comments are not kept); rules, defaults and
 * jobs the suite did not exercise are kept as they were.
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import {
  BudgetRuleSet,
  evaluateBudget,
  LIMIT_NAMES,
  loadBudgetFile,
  UNROUTED,
  type BudgetRule,
  type Budgets,
  type Limits,
  type RuleSettings,
} from '@request-budget/core';
import { sortedKeys, type Figures, type Finding, type RouteTable } from './baseline';

/** Limits written for each route (and job) from the figures. */
export const WRITTEN_LIMITS = ['queries', 'repeatedQueries', 'untimedHttpCalls'] as const;

/** A route label split: `GET /users/:id` → method and template; `job email.send` → the job. */
export function parseRouteLabel(label: string): { job?: string; method?: string; template?: string } | undefined {
  if (label.startsWith('job ')) return { job: label.slice(4) };
  if (label.startsWith('measureCost')) return undefined; // direct calls have no budget rule
  const [method, template] = label.split(' ', 2);
  if (method === undefined || template === undefined) return undefined;
  return { ...(method !== 'ANY' ? { method } : {}), ...(template !== UNROUTED ? { template } : {}) };
}

/** The most each route (over every test) did in one request. */
export function perRouteMaxima(table: RouteTable): Map<string, Figures> {
  const maxima = new Map<string, Figures>();
  for (const route of sortedKeys(table)) {
    for (const figures of Object.values(table[route])) {
      const known = maxima.get(route);
      maxima.set(
        route,
        known === undefined
          ? figures
          : {
              queries: Math.max(known.queries, figures.queries),
              repeated: Math.max(known.repeated, figures.repeated),
              rows: Math.max(known.rows, figures.rows),
              untimedHttpCalls: Math.max(known.untimedHttpCalls, figures.untimedHttpCalls),
              statements: { ...known.statements, ...figures.statements },
            },
      );
    }
  }
  return maxima;
}

/**
 * Every limit of the budget file that a route exceeded in a test, as findings: `before` is the
 * limit, `after` the figure. Throws BudgetFileError for a file that cannot be used.
 */
export function checkAgainstBudgets(table: RouteTable, budgetPath: string): Finding[] {
  const rules = new BudgetRuleSet(loadBudgetFile(budgetPath));
  const findings: Finding[] = [];
  for (const route of sortedKeys(table)) {
    const parsed = parseRouteLabel(route);
    if (parsed === undefined) continue;
    const rule = parsed.job !== undefined ? rules.forJob(parsed.job) : rules.forRoute(parsed.method, parsed.template);
    for (const test of sortedKeys(table[route])) {
      const figures = table[route][test];
      const statements = sortedKeys(figures.statements)
        .map((fingerprint) => ({ fingerprint, count: figures.statements[fingerprint] }))
        .sort((a, b) => b.count - a.count);
      // Only the figures a test run measures the same way as production are judged.
      const limits: Limits = Object.fromEntries(
        Object.entries(rule.limits).filter(([name]) => name === 'queries' || name === 'rows' || name === 'repeatedQueries' || name === 'untimedHttpCalls'),
      );
      const violations = evaluateBudget(
        {
          durationMs: 0,
          queries: figures.queries,
          dbTimeMs: 0,
          rows: figures.rows,
          repeatedCount: figures.repeated,
          statements,
          httpClientCalls: 0,
          httpClientUntimed: figures.untimedHttpCalls,
        },
        { ...rule, limits },
      );
      for (const violation of violations) {
        findings.push({
          route,
          test,
          figure: `${violation.metric} (rule ${rule.name})`,
          before: violation.limit,
          after: violation.value,
          ...(violation.statement !== undefined ? { statement: violation.statement } : {}),
        });
      }
    }
  }
  return findings;
}

/** Writes the routes' (and jobs') observed limits into the budget file, creating it if needed. */
export function writeBudgets(table: RouteTable, budgetPath: string): void {
  const existing: Budgets | undefined = existsSync(budgetPath) ? loadBudgetFile(budgetPath) : undefined;
  const routes = [...(existing?.routes ?? [])].map((rule) => ({ ...rule }));
  const jobs = [...(existing?.jobs ?? [])].map((rule) => ({ ...rule }));
  for (const [label, figures] of perRouteMaxima(table)) {
    const parsed = parseRouteLabel(label);
    if (parsed === undefined || (parsed.job === undefined && parsed.template === undefined)) continue;
    const list = parsed.job !== undefined ? jobs : routes;
    const match = parsed.job ?? `${parsed.method ?? '*'} ${parsed.template}`;
    const observed: Limits = { queries: figures.queries, repeatedQueries: figures.repeated, untimedHttpCalls: figures.untimedHttpCalls };
    const index = list.findIndex((rule) => normaliseMatch(rule.match) === normaliseMatch(match));
    if (index >= 0) list[index] = { ...list[index], limits: { ...list[index].limits, ...observed } };
    else list.push({ match, location: '', limits: observed });
  }
  const text = extname(budgetPath).toLowerCase() === '.json' ? budgetsJson(existing?.defaults, routes, jobs) : budgetsYaml(existing?.defaults, routes, jobs);
  mkdirSync(dirname(budgetPath), { recursive: true });
  const temporary = `${budgetPath}.${process.pid}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, budgetPath);
}

function normaliseMatch(match: string): string {
  const parts = match.trim().split(/\s+/);
  return parts.length === 2 ? `${parts[0].toUpperCase()} ${parts[1]}` : parts.join(' ');
}

/** A rule's keys in the schema's order. */
function ruleObject(settings: RuleSettings, match?: string): Record<string, unknown> {
  const out: Record<string, unknown> = match !== undefined ? { match } : {};
  for (const name of LIMIT_NAMES) if (settings.limits[name] !== undefined) out[name] = settings.limits[name];
  if (settings.severity !== undefined) out.severity = settings.severity;
  if (settings.heapMinConfidence !== undefined) out.heapMinConfidence = settings.heapMinConfidence;
  if (settings.allowRepeated !== undefined) out.allowRepeated = [...settings.allowRepeated];
  return out;
}

function budgetsJson(defaults: RuleSettings | undefined, routes: BudgetRule[], jobs: BudgetRule[]): string {
  const file: Record<string, unknown> = { version: 1 };
  if (defaults !== undefined && Object.keys(ruleObject(defaults)).length > 0) file.defaults = ruleObject(defaults);
  if (routes.length > 0) file.routes = routes.map((rule) => ruleObject(rule, rule.match));
  if (jobs.length > 0) file.jobs = jobs.map((rule) => ruleObject(rule, rule.match));
  return `${JSON.stringify(file, null, 2)}\n`;
}

/** YAML by hand: strings double-quoted (JSON strings are YAML strings), so nothing needs escaping rules of its own. */
function budgetsYaml(defaults: RuleSettings | undefined, routes: BudgetRule[], jobs: BudgetRule[]): string {
  const lines = ['# request-budget budgets. Route and job limits are written by `request-budget budgets --write` from the CI baseline.', 'version: 1'];
  const scalar = (value: unknown) => (typeof value === 'string' ? JSON.stringify(value) : String(value));
  const entries = (object: Record<string, unknown>, indent: string, first?: string) =>
    Object.entries(object).map(([key, value], index) => {
      const lead = index === 0 && first !== undefined ? first : indent;
      return Array.isArray(value) ? `${lead}${key}: [${value.map(scalar).join(', ')}]` : `${lead}${key}: ${scalar(value)}`;
    });
  if (defaults !== undefined && Object.keys(ruleObject(defaults)).length > 0) lines.push('defaults:', ...entries(ruleObject(defaults), '  '));
  for (const [key, rules] of [
    ['routes', routes],
    ['jobs', jobs],
  ] as const) {
    if (rules.length === 0) continue;
    lines.push(`${key}:`);
    for (const rule of rules) lines.push(...entries(ruleObject(rule, rule.match), '    ', '  - '));
  }
  return `${lines.join('\n')}\n`;
}
