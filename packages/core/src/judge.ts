/**
 * The one budget judgement: given a root span's attributes (with its cost record) and the rules,
 * which rule applies, what it violates, and exactly what to write back — the `budget.*`
 * attributes, one `budget.breach` event per violation, the status — plus the breach reports for
 * alerting. The in-process span processor and the collector only apply the result to their own
 * span representation.
 */
import { BUDGET_BREACH_EVENT, BUDGET_BREACHED, BUDGET_RULE, BUDGET_UNJUDGED, BUDGET_VIOLATIONS, COST_DB_QUERIES, MEASUREMENT_ATTRIBUTE } from './attributes';
import { breachReports, type BreachReport } from './breach-report';
import type { BudgetRuleSet, ResolvedRule } from './budget-rules';
import type { RepeatedStatement } from './cost-tally';
import { costRecordFromAttributes, evaluateBudget, formatUnjudged, formatViolation, unjudgedLimits, type UnjudgedLimit, type Violation } from './evaluator';
import { routeOf } from './root-route';
import type { AttributeMap } from './span-classifier';

/** Zipkin keeps only an event's time and name and rejects identical annotations in one span:
 * breach events are written this far apart, from the span's end on. */
export const BREACH_EVENT_SPACING_NS = 1000;

/** What the judge needs of a root. */
export interface JudgeInput {
  readonly attributes: AttributeMap;
  readonly durationMs: number;
  /**
   * Every statement with its count, asked for only when the rule allows some repeats (looking
   * past an allowed top statement needs the next one). Undefined where only the top is known.
   */
  readonly statements?: () => readonly RepeatedStatement[] | undefined;
}

export interface JudgeOptions {
  /** Give the span an ERROR status when a critical limit is exceeded. @default false */
  readonly errorStatusOnCritical?: boolean;
  /** Rewrites the route template before matching (the collector's `{id}` → `:id`). */
  readonly normaliseRoute?: (route: string) => string;
}

/** One event to add to the span, `offsetNs` after its end time. */
export interface BreachEventToWrite {
  readonly name: string;
  readonly attributes: Readonly<Record<string, string | number>>;
  readonly offsetNs: number;
}

export interface Judgement {
  readonly rule: ResolvedRule;
  readonly violations: readonly Violation[];
  /** Limits of the rule this record could not be judged on (written as `budget.unjudged`). */
  readonly unjudged: readonly UnjudgedLimit[];
  /** `GET /users/:id` for a request, `job email.send` for a job: the label of reports and metrics. */
  readonly label: string;
  /** `budget.rule`, `budget.breached` and, when breached, `budget.violations`; `budget.unjudged` when a limit could not be judged. */
  readonly attributes: Readonly<Record<string, string | boolean | string[]>>;
  readonly events: readonly BreachEventToWrite[];
  /** Set when the span's status should become ERROR with this message. */
  readonly errorStatusMessage: string | undefined;
  /** One report per violation, for the alert sinks; the caller supplies where and when. */
  reports(context: Omit<BreachReport, 'metric' | 'value' | 'limit' | 'severity' | 'statement' | 'route' | 'rule'>): BreachReport[];
}

/**
 * Whether a root is to be judged: it has a cost record, has not been judged yet (by an SDK
 * upstream, say), and is not a test measurement.
 */
export function isJudgeable(attributes: AttributeMap): boolean {
  return attributes[COST_DB_QUERIES] !== undefined && attributes[BUDGET_RULE] === undefined && attributes[MEASUREMENT_ATTRIBUTE] !== true;
}

/** Judges one root against the rules. Pure: writes nothing. */
export function judge(input: JudgeInput, rules: BudgetRuleSet, options: JudgeOptions = {}): Judgement {
  const { attributes } = input;
  const route = routeOf(attributes);
  const rule =
    route.job !== undefined
      ? rules.forJob(route.job)
      : rules.forRoute(route.method, route.template === undefined ? undefined : (options.normaliseRoute?.(route.template) ?? route.template));
  const statements = rule.allowRepeated.length > 0 ? input.statements?.() : undefined;
  const record = costRecordFromAttributes(attributes, input.durationMs);
  const cost = statements === undefined ? record : { ...record, statements };
  const violations = evaluateBudget(cost, rule);
  const unjudged = unjudgedLimits(cost, rule);
  const formatted = violations.map(formatViolation);
  const critical = options.errorStatusOnCritical === true && violations.some((violation) => violation.severity === 'critical');
  return {
    rule,
    violations,
    unjudged,
    label: route.label,
    attributes: {
      [BUDGET_RULE]: rule.name,
      [BUDGET_BREACHED]: violations.length > 0,
      ...(violations.length > 0 ? { [BUDGET_VIOLATIONS]: formatted } : {}),
      ...(unjudged.length > 0 ? { [BUDGET_UNJUDGED]: unjudged.map(formatUnjudged) } : {}),
    },
    events: violations.map((violation, index) => ({
      name: BUDGET_BREACH_EVENT,
      attributes: {
        metric: violation.metric,
        value: violation.value,
        limit: violation.limit,
        severity: violation.severity,
        ...(violation.statement !== undefined ? { statement: violation.statement } : {}),
      },
      offsetNs: index * BREACH_EVENT_SPACING_NS,
    })),
    errorStatusMessage: critical ? `budget exceeded: ${formatted.join(', ')}` : undefined,
    reports: (context) => breachReports(violations, { ...context, route: route.label, rule: rule.name }),
  };
}
