/**
 * BudgetSpanProcessor: when a request or job root ends, judges its cost record (written just
 * before by the CostSpanProcessor, which must come first) against the budget rule that applies,
 * and marks the span: `budget.rule`, `budget.breached`, `budget.violations` and one
 * `budget.breach` event per violation. Breaches are handed to the alert dispatcher, which only
 * queues them: nothing here waits on the network.
 */
import { SpanStatusCode } from '@opentelemetry/api';
import { addHrTimes, hrTimeToMilliseconds } from '@opentelemetry/core';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import {
  BUDGET_BREACH_EVENT,
  BUDGET_BREACHED,
  BUDGET_RULE,
  BUDGET_VIOLATIONS,
  COST_DB_QUERIES,
  HTTP_METHOD_LEGACY,
  HTTP_REQUEST_METHOD,
  HTTP_ROUTE,
  UNROUTED,
  breachReports,
  costRecordFromAttributes,
  evaluateBudget,
  formatViolation,
  type BreachReport,
  type BudgetRuleSet,
} from '@request-budget/core';
import { costStatementsOf } from './cost-span-processor';
import { describeError, reportProblem } from './diagnostics';

/** Attribute naming a background job on its root span (set by withBudget). */
export const JOB_NAME_ATTRIBUTE = 'request_budget.job.name';
/** Marks measureCost's root span: measured, never judged or alerted on. */
export const MEASUREMENT_ATTRIBUTE = 'request_budget.measurement';

export interface BudgetSpanProcessorOptions {
  readonly rules: BudgetRuleSet;
  /** Service name used in breach reports. */
  readonly serviceName: string;
  /** Receives the breaches of each root; must only queue them. */
  readonly onBreach?: (reports: BreachReport[]) => void;
  /** Set span status ERROR when a critical limit is exceeded. @default false */
  readonly errorStatusOnCritical?: boolean;
}

export class BudgetSpanProcessor implements SpanProcessor {
  private readonly rules: BudgetRuleSet;
  private readonly serviceName: string;
  private readonly onBreach: ((reports: BreachReport[]) => void) | undefined;
  private readonly errorStatusOnCritical: boolean;
  private hookFailureReported = false;

  constructor(options: BudgetSpanProcessorOptions) {
    this.rules = options.rules;
    this.serviceName = options.serviceName;
    this.onBreach = options.onBreach;
    this.errorStatusOnCritical = options.errorStatusOnCritical ?? false;
  }

  onStart(): void {}

  onEnding(span: Span): void {
    try {
      const attributes = span.attributes;
      if (attributes[COST_DB_QUERIES] === undefined || attributes[BUDGET_RULE] !== undefined || attributes[MEASUREMENT_ATTRIBUTE] === true) return;
      this.judge(span);
    } catch (error) {
      if (this.hookFailureReported) return;
      this.hookFailureReported = true;
      reportProblem(`budget evaluation failed and skipped that span (reported once): ${describeError(error)}`);
    }
  }

  onEnd(_span: ReadableSpan): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }

  private judge(span: Span): void {
    const attributes = span.attributes;
    const jobName = attributes[JOB_NAME_ATTRIBUTE];
    const method = stringOr(attributes[HTTP_REQUEST_METHOD] ?? attributes[HTTP_METHOD_LEGACY]);
    const route = stringOr(attributes[HTTP_ROUTE]);
    const rule = typeof jobName === 'string' ? this.rules.forJob(jobName) : this.rules.forRoute(method, route);
    const durationMs = hrTimeToMilliseconds(span.duration);
    // Every statement is only needed to look past allowed repeats; sorting them costs.
    const statements = rule.allowRepeated.length > 0 ? costStatementsOf(span) : undefined;
    const cost = { ...costRecordFromAttributes(attributes, durationMs), ...(statements !== undefined ? { statements } : {}) };
    const violations = evaluateBudget(cost, rule);

    span.setAttribute(BUDGET_RULE, rule.name);
    span.setAttribute(BUDGET_BREACHED, violations.length > 0);
    if (violations.length === 0) return;
    span.setAttribute(BUDGET_VIOLATIONS, violations.map(formatViolation));
    // One microsecond apart from the span's end: Zipkin keeps only the time and the name of an
    // event, and rejects identical annotations in one span.
    violations.forEach((violation, index) => {
      span.addEvent(
        BUDGET_BREACH_EVENT,
        {
          metric: violation.metric,
          value: violation.value,
          limit: violation.limit,
          severity: violation.severity,
          ...(violation.statement !== undefined ? { statement: violation.statement } : {}),
        },
        addHrTimes(span.endTime, [0, index * 1000]),
      );
    });
    if (this.errorStatusOnCritical && violations.some((violation) => violation.severity === 'critical')) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: `budget exceeded: ${violations.map(formatViolation).join(', ')}` });
    }
    if (this.onBreach !== undefined) {
      const context = span.spanContext();
      this.onBreach(
        breachReports(violations, {
          service: this.serviceName,
          route: typeof jobName === 'string' ? `job ${jobName}` : `${method ?? 'ANY'} ${route ?? UNROUTED}`,
          rule: rule.name,
          traceId: context.traceId,
          spanId: context.spanId,
          timeMs: hrTimeToMilliseconds(span.endTime),
        }),
      );
    }
  }
}

function stringOr(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}
