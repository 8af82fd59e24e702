/**
 * What cost attribution adds to a tracer provider — its span processors and its sampler — and
 * what they need to run (budgets, alert sinks, the cost meter provider). One place, shared by
 * start() (request-budget's own NodeSDK) and requestBudgetComponents() (an app's own NodeSDK).
 */
import type { Instrumentation } from '@opentelemetry/instrumentation';
import type { MeterProvider } from '@opentelemetry/sdk-metrics';
import { createAlwaysRecordSampler, type Sampler, type SpanProcessor } from '@opentelemetry/sdk-trace';
import { BudgetFileError, BudgetRuleSet, loadBudgetFile, parseBudgetObject, type Budgets } from '@request-budget/core';
import { createAlertDispatcher, type AlertDispatcher } from '@request-budget/alerts';
import { hookEveryDriverInstance } from './adopted-instrumentations';
import { BreachedTraceExportProcessor } from './breached-trace-export-processor';
import { BudgetSpanProcessor } from './budget-span-processor';
import type { ResolvedConfig } from './config';
import { CostSpanProcessor } from './cost-span-processor';
import { reportProblem } from './diagnostics';
import { FailureMetrics } from './failure-metrics';
import { RegistrationProbe, watchRegistrations } from './global-registration';
import { GuardedSpanProcessor } from './guarded-span-processor';
import { useLightChildren } from './light-children';
import { createCostMeterProvider } from './meter-provider';
import { outsideAnyTrace } from './outside-any-trace';
import { markOwnSpans } from './own-spans';
import { SummarySpanProcessor } from './summary-span-processor';
import { UnpatchedPgBossCheck } from './jobs/unpatched-pg-boss-check';
import { ExporterConnections } from './exporter-connections';
import { createExportProcessors } from './trace-exporters';

export interface CostPipeline {
  readonly budgets: Budgets | undefined;
  readonly alerts: AlertDispatcher | undefined;
  readonly meterProvider: MeterProvider | undefined;
  /** In order: cost attribution, budgets, metrics, the app's own, the summary, export. */
  readonly spanProcessors: SpanProcessor[];
  /** The configured sampler, made to record every span so every request gets its cost record. */
  readonly sampler: Sampler;
  /** Tells whether the processors receive the process's spans (see global-registration.ts). */
  readonly probe: RegistrationProbe;
  /** The exporters' connections, dropped when shutdown reaches its bound. */
  readonly connections: ExporterConnections;
}

/**
 * Builds the processors and sampler for `config`. `instrumentations` are those the provider's
 * spans will come from (the instrumentation metrics option shares the meter provider with them).
 */
export function assemblePipeline(
  config: ResolvedConfig,
  options: { spanProcessors?: readonly SpanProcessor[] },
  instrumentations: readonly Instrumentation[],
): CostPipeline {
  if (config.summaryByDefault) {
    reportProblem('no trace exporter configured (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT): printing one summary line per request on stderr');
  }
  const budgets = loadBudgets(config);
  const alerts = budgets === undefined ? undefined : createAlertDispatcher(config.alerts, reportProblem, { runDetached: outsideAnyTrace });
  const rules = budgets === undefined ? undefined : new BudgetRuleSet(budgets);
  const connections = new ExporterConnections();
  const costMeter = createCostMeterProvider(config, instrumentations, connections, rules);
  const meterProvider = costMeter?.provider;
  // Export and alert failures counted on the cost meter provider, beside the cost metrics.
  const failures =
    costMeter === undefined ? undefined : new FailureMetrics({ meter: costMeter.meter, service: costMeter.service, exporters: config.traceExporters, alerts });
  const exportProcessors = createExportProcessors(config, connections, failures);
  const probe = new RegistrationProbe();
  const cost = new CostSpanProcessor({ memoryAttribution: config.memoryAttribution, memorySampling: { ratio: config.memorySampleRatio } });
  const metrics = costMeter?.costMetrics;
  const summary = config.summary ? new SummarySpanProcessor() : undefined;
  const exportBreached = config.exportBreachedTraces && budgets !== undefined && exportProcessors.length > 0;
  // Queries and calls of unsampled requests are light spans unless whole traces are to be exported.
  useLightChildren(!(exportBreached && config.breachedTraceDetail === 'trace'));
  cost.forwardLateLightSpansTo([metrics, summary].filter((processor) => processor !== undefined));
  const spanProcessors: SpanProcessor[] = [
    probe,
    cost,
    // pg-boss's own job spans, unpatched (an ES module under --require): said once (jobs/).
    new UnpatchedPgBossCheck(),
    ...(rules !== undefined
      ? [
          new BudgetSpanProcessor({
            rules,
            serviceName: config.serviceName ?? 'unknown_service:node',
            errorStatusOnCritical: config.errorStatusOnCritical,
            ...(alerts !== undefined ? { onBreach: (reports) => alerts.report(reports) } : {}),
          }),
        ]
      : []),
    ...(metrics !== undefined ? [metrics] : []),
    ...(options.spanProcessors ?? []).map((processor) => new GuardedSpanProcessor(processor)),
    ...(summary !== undefined ? [summary] : []),
    ...(exportBreached
      ? [new BreachedTraceExportProcessor(exportProcessors, { detail: config.breachedTraceDetail, wholeTracesPerMinute: config.wholeBreachedTracesPerMinute })]
      : exportProcessors),
  ];
  // Unsampled spans are still recorded (not exported) so every request gets its cost record:
  // its root and the app's own spans; its queries and calls are light spans (light-children.ts).
  return { budgets, alerts, meterProvider, spanProcessors, sampler: createAlwaysRecordSampler(config.sampler), probe, connections };
}

/**
 * Readies the process for another OpenTelemetry setup beside this one: the instrumentations'
 * spans are told apart from another instance's, every instrumentation-pg/-mysql2 instance counts
 * rows, and tracer provider registrations are watched. Call before the provider registers.
 */
export function prepareForOtherSetups(instrumentations: readonly Instrumentation[], probe: RegistrationProbe): void {
  if (prepared) reportProblem('request-budget is set up twice in this process (register or start(), and requestBudgetComponents()): use one of them');
  prepared = true;
  markOwnSpans(instrumentations);
  hookEveryDriverInstance();
  watchRegistrations(probe);
}

let prepared = false;

/** Loads the configured budgets; a bad file is reported, once, and the app runs without them. */
function loadBudgets(config: ResolvedConfig): Budgets | undefined {
  if (config.budgets === undefined) return undefined;
  try {
    return typeof config.budgets === 'string' ? loadBudgetFile(config.budgets) : parseBudgetObject(config.budgets);
  } catch (error) {
    if (!(error instanceof BudgetFileError)) throw error;
    reportProblem(`budget file ${error.source} rejected; running without budgets (costs are still recorded):`);
    for (const problem of error.problems) reportProblem(`  ${problem}`);
    return undefined;
  }
}

/**
 * Attributes the cost record and the budget marks may add to a root span. A span attribute
 * count limit set by the user would otherwise drop them silently (they are written last, just
 * before the span ends): the limit is raised by this much, and that is said once. Shared by
 * start() and requestBudgetComponents() (whose result, spread into NodeSDK, carries it).
 */
export const COST_RECORD_ATTRIBUTE_ROOM = 32;

export function spanLimitsWithRoomForCost(config: ResolvedConfig): { spanLimits?: { attributeCountLimit: number } } {
  const limit = config.spanAttributeCountLimit;
  if (limit === undefined) return {};
  const raised = limit + COST_RECORD_ATTRIBUTE_ROOM;
  reportProblem(
    `span attribute count limit ${limit} raised to ${raised}, so the cost record (up to ${COST_RECORD_ATTRIBUTE_ROOM} attributes on a request's span) is not dropped`,
  );
  return { spanLimits: { attributeCountLimit: raised } };
}
