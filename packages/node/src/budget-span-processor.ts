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
import { isJudgeable, judge, type BreachReport, type BudgetRuleSet } from '@request-budget/core';
import { costStatementsOf } from './cost-span-processor';
import { describeError, reportProblem } from './diagnostics';

// The markers live with the attribute contract; re-exported here for existing imports.
export { JOB_NAME_ATTRIBUTE, MEASUREMENT_ATTRIBUTE } from '@request-budget/core';

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
      if (isJudgeable(span.attributes)) this.judge(span);
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
    const judgement = judge(
      { attributes: span.attributes, durationMs: hrTimeToMilliseconds(span.duration), statements: () => costStatementsOf(span) },
      this.rules,
      { errorStatusOnCritical: this.errorStatusOnCritical },
    );
    span.setAttributes(judgement.attributes);
    for (const event of judgement.events) span.addEvent(event.name, event.attributes, addHrTimes(span.endTime, [0, event.offsetNs]));
    if (judgement.errorStatusMessage !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: judgement.errorStatusMessage });
    if (judgement.violations.length > 0 && this.onBreach !== undefined) {
      const context = span.spanContext();
      this.onBreach(
        judgement.reports({ service: this.serviceName, traceId: context.traceId, spanId: context.spanId, timeMs: hrTimeToMilliseconds(span.endTime) }),
      );
    }
  }
}
