/**
 * start() and shutdown(): the NodeSDK with request-budget's instrumentations and processors.
 * Everything is resolved once at start; a failure to start is reported and leaves the app
 * running uninstrumented, never crashing it.
 */
import type { MeterProvider } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { createAlwaysRecordSampler, type SpanProcessor } from '@opentelemetry/sdk-trace';
import { BudgetFileError, BudgetRuleSet, loadBudgetFile, parseBudgetObject, type Budgets } from '@request-budget/core';
import { createAlertDispatcher, type AlertDispatcher, type AlertSinkStats } from '@request-budget/alerts';
import { outsideAnyTrace } from './outside-any-trace';
import { BreachedTraceExportProcessor } from './breached-trace-export-processor';
import { BudgetSpanProcessor } from './budget-span-processor';
import { resolveConfig, type ResolvedConfig } from './config';
import { CostSpanProcessor } from './cost-span-processor';
import { describeError, reportProblem } from './diagnostics';
import { installExitHooks } from './exit-hooks';
import { CostMetricsProcessor } from './cost-metrics-processor';
import { GuardedSpanProcessor } from './guarded-span-processor';
import { createCostMeterProvider } from './meter-provider';
import { wrapGlobalFetch } from './http-client-timeouts';
import { createInstrumentations } from './instrumentations';
import { SummarySpanProcessor } from './summary-span-processor';
import { createExportProcessors } from './trace-exporters';
import type { RequestBudgetOptions } from './types';

/** Longest wait for the last export when the process is stopping. */
const EXIT_FLUSH_TIMEOUT_MS = 3000;

interface Running {
  readonly sdk: NodeSDK;
  readonly config: ResolvedConfig;
  readonly budgets: Budgets | undefined;
  readonly alerts: AlertDispatcher | undefined;
  readonly spanProcessors: readonly SpanProcessor[];
  readonly meterProvider: MeterProvider | undefined;
  readonly restoreFetch: () => void;
  readonly removeExitHooks: () => void;
  stopping: Promise<void> | undefined;
}

// The one SDK this process runs: installed by start(), cleared by shutdown(). Instrumentations
// and the API globals cannot be cleanly re-registered, so a stopped process stays stopped.
let running: Running | undefined;
let stopped = false;

/**
 * Starts OpenTelemetry with request-budget's cost attribution. Safe to call from `--require`:
 * it never throws. Returns whether the SDK is now running.
 */
export function start(options: RequestBudgetOptions = {}): boolean {
  if (running !== undefined) {
    reportProblem('start() was called again while already running; the second call is ignored');
    return true;
  }
  if (stopped) {
    reportProblem('start() after shutdown() is not supported; request-budget stays stopped in this process');
    return false;
  }
  try {
    const config = resolveConfig(options, process.env, reportProblem);
    if (config.disabled) return false;
    const serviceName = config.serviceName ?? 'unknown_service:node';
    if (config.summaryByDefault) {
      reportProblem('no trace exporter configured (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT): printing one summary line per request on stderr');
    }
    const budgets = loadBudgets(config);
    const alerts = budgets === undefined ? undefined : createAlertDispatcher(config.alerts, reportProblem, { runDetached: outsideAnyTrace });
    const rules = budgets === undefined ? undefined : new BudgetRuleSet(budgets);
    const exportProcessors = createExportProcessors(config);
    const instrumentations = [
      ...createInstrumentations(config.instrumentations, { expressLayerSpans: config.expressLayerSpans }),
      ...(options.extraInstrumentations ?? []),
    ];
    const meterProvider = createCostMeterProvider(config, instrumentations);
    const spanProcessors: SpanProcessor[] = [
      new CostSpanProcessor(),
      ...(budgets !== undefined
        ? [
            new BudgetSpanProcessor({
              rules: rules!,
              serviceName,
              errorStatusOnCritical: config.errorStatusOnCritical,
              ...(alerts !== undefined ? { onBreach: (reports) => alerts.report(reports) } : {}),
            }),
          ]
        : []),
      ...(meterProvider !== undefined ? [new CostMetricsProcessor({ meter: meterProvider.getMeter('@request-budget/node'), ...(rules !== undefined ? { rules } : {}) })] : []),
      ...(options.spanProcessors ?? []).map((processor) => new GuardedSpanProcessor(processor)),
      ...(config.summary ? [new SummarySpanProcessor()] : []),
      ...(config.exportBreachedTraces && budgets !== undefined && exportProcessors.length > 0
        ? [new BreachedTraceExportProcessor(exportProcessors)]
        : exportProcessors),
    ];
    const sdk = new NodeSDK({
      ...(config.serviceName !== undefined ? { serviceName: config.serviceName } : {}),
      instrumentations,
      spanProcessors,
      // Unsampled spans are still recorded (not exported) so every request gets its cost record.
      sampler: createAlwaysRecordSampler(config.sampler),
      // Metrics go through request-budget's own provider (see meter-provider.ts); logs nowhere.
      metricReaders: [],
      logRecordProcessors: [],
    });
    sdk.start();
    const restoreFetch = config.instrumentations.includes('undici') ? wrapGlobalFetch() : () => {};
    const state: Running = { sdk, config, budgets, alerts, spanProcessors, meterProvider, restoreFetch, removeExitHooks: () => {}, stopping: undefined };
    running = state;
    if (config.shutdownOnExit) Object.assign(state, { removeExitHooks: installExitHooks({ flush, shutdown }, EXIT_FLUSH_TIMEOUT_MS) });
    return true;
  } catch (error) {
    reportProblem(`could not start, the app runs without request-budget: ${describeError(error)}`);
    return false;
  }
}

/** Flushes every processor and exporter and stops the SDK. Safe to call twice. */
export function shutdown(): Promise<void> {
  const state = running;
  if (state === undefined) return Promise.resolve();
  state.stopping ??= (async () => {
    state.removeExitHooks();
    state.restoreFetch();
    try {
      await state.sdk.shutdown();
      // After the SDK: the last spans' breaches and metrics are recorded by now.
      await Promise.all([state.alerts?.shutdown(), state.meterProvider?.shutdown()]);
    } catch (error) {
      reportProblem(`shutdown: ${describeError(error)}`);
    } finally {
      if (running === state) running = undefined;
      stopped = true;
    }
  })();
  return state.stopping;
}

/** Exports what has ended so far and delivers queued alerts, without stopping anything. */
export async function flush(): Promise<void> {
  const state = running;
  if (state === undefined) return;
  await Promise.allSettled([...state.spanProcessors.map((processor) => processor.forceFlush()), state.alerts?.flush(), state.meterProvider?.forceFlush()]);
}

/** The configuration in force, for diagnostics and tests; undefined when not running. */
export function activeConfig(): ResolvedConfig | undefined {
  return running?.config;
}

/** The budgets in force; undefined when not running or running without budgets. */
export function activeBudgets(): Budgets | undefined {
  return running?.budgets;
}

/** Each alert sink's counters (delivered, failed, dropped), by sink name. */
export function alertStats(): Record<string, Readonly<AlertSinkStats>> {
  return running?.alerts?.stats() ?? {};
}

/** Delivers queued alerts now (tests, and apps that stop without a signal). */
export async function flushAlerts(): Promise<void> {
  await running?.alerts?.flush();
}

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
