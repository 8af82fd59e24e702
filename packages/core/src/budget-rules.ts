/**
 * A budget file compiled for lookups: which rule applies to a request or a job, with the
 * defaults filled in. The most specific matching rule wins (see rule-pattern.ts); between
 * equally specific rules, the first in the file.
 */
import type { HeapConfidence } from './attributes';
import type { BudgetRule, Budgets, Limits, Severity } from './budget-file';
import { compareSpecificity, compileJobPattern, compileRoutePattern, type CompiledPattern } from './rule-pattern';

/** Name reported in `budget.rule` when no rule matched and only the defaults apply. */
export const DEFAULTS_RULE_NAME = 'defaults';

/** The limits and settings that apply to one request or job. */
export interface ResolvedRule {
  /** The matching rule's `match`, or `defaults`. */
  readonly name: string;
  readonly limits: Limits;
  readonly severity: Severity;
  readonly heapMinConfidence: HeapConfidence;
  readonly allowRepeated: readonly string[];
}

const BUILT_IN = { severity: 'warning', heapMinConfidence: 'medium' } as const;

interface Candidate<Input extends unknown[]> {
  readonly pattern: CompiledPattern<Input>;
  readonly resolved: ResolvedRule;
}

export class BudgetRuleSet {
  private readonly routes: Candidate<[string | undefined, string]>[];
  private readonly jobs: Candidate<[string]>[];
  private readonly defaults: ResolvedRule;

  constructor(readonly budgets: Budgets) {
    this.defaults = resolve(DEFAULTS_RULE_NAME, budgets.defaults, undefined);
    this.routes = rank(budgets.routes, compileRoutePattern, this.defaults);
    this.jobs = rank(budgets.jobs, compileJobPattern, this.defaults);
  }

  /** The rule for a request; without a route template only the defaults apply. */
  forRoute(method: string | undefined, routeTemplate: string | undefined): ResolvedRule {
    if (routeTemplate === undefined || routeTemplate === '') return this.defaults;
    const byTemplate = this.routeCache.get(method ?? '');
    const cached = byTemplate?.get(routeTemplate);
    if (cached !== undefined) return cached;
    const rule = this.routes.find((candidate) => candidate.pattern.matches(method, routeTemplate))?.resolved ?? this.defaults;
    if ((method ?? '').length <= MAX_REMEMBERED_NAME_LENGTH && this.remember(routeTemplate)) {
      if (byTemplate === undefined) this.routeCache.set(method ?? '', new Map([[routeTemplate, rule]]));
      else byTemplate.set(routeTemplate, rule);
    }
    return rule;
  }

  /** The rule for a background job by name. */
  forJob(name: string): ResolvedRule {
    const cached = this.jobCache.get(name);
    if (cached !== undefined) return cached;
    const rule = this.jobs.find((candidate) => candidate.pattern.matches(name))?.resolved ?? this.defaults;
    if (this.remember(name)) this.jobCache.set(name, rule);
    return rule;
  }

  // Each request and job is judged: a route's rule is looked up once, then remembered. The names
  // can come from senders (the collector), so what is remembered is bounded in count and length.
  private readonly routeCache = new Map<string, Map<string, ResolvedRule>>();
  private readonly jobCache = new Map<string, ResolvedRule>();
  private remembered = 0;

  private remember(name: string): boolean {
    if (name.length > MAX_REMEMBERED_NAME_LENGTH || this.remembered >= MAX_REMEMBERED_NAMES) return false;
    this.remembered += 1;
    return true;
  }
}

/** Route templates and job names whose rule is remembered, at most, and their longest length. */
const MAX_REMEMBERED_NAMES = 2000;
const MAX_REMEMBERED_NAME_LENGTH = 256;

function rank<Input extends unknown[]>(
  rules: readonly BudgetRule[],
  compile: (pattern: string) => CompiledPattern<Input>,
  defaults: ResolvedRule,
): Candidate<Input>[] {
  // Array.prototype.sort is stable: equally specific rules keep their file order. Malformed
  // patterns never get here: the loader rejects the file.
  return rules
    .map((rule) => ({ pattern: compile(rule.match), resolved: resolve(rule.match, rule, defaults) }))
    .filter((candidate) => candidate.pattern.problem === undefined)
    .sort((a, b) => compareSpecificity(a.pattern.specificity, b.pattern.specificity));
}

function resolve(name: string, rule: Omit<BudgetRule, 'match' | 'location'>, defaults: ResolvedRule | undefined): ResolvedRule {
  return {
    name,
    limits: { ...defaults?.limits, ...rule.limits },
    severity: rule.severity ?? defaults?.severity ?? BUILT_IN.severity,
    heapMinConfidence: rule.heapMinConfidence ?? defaults?.heapMinConfidence ?? BUILT_IN.heapMinConfidence,
    allowRepeated: rule.allowRepeated ?? defaults?.allowRepeated ?? [],
  };
}
