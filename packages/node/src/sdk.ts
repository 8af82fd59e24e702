/**
 * start() and shutdown(): the NodeSDK with request-budget's instrumentations and processors.
 * Everything is resolved once at start; a failure to start is reported and leaves the app
 * running uninstrumented, never crashing it.
 */
import type { Instrumentation } from '@opentelemetry/instrumentation';
import type { MeterProvider } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import type { SpanProcessor } from '@opentelemetry/sdk-trace';
import type { Budgets } from '@request-budget/core';
import type { AlertDispatcher, AlertSinkStats } from '@request-budget/alerts';
import { resolveConfig, type ResolvedConfig } from './config';
import { describeError, reportProblem } from './diagnostics';
import { setTimeout as sleep } from 'node:timers/promises';
import { installExitHooks } from './exit-hooks';
import type { ExporterConnections } from './exporter-connections';
import { wrapGlobalFetch } from './http-client-timeouts';
import { createInstrumentations } from './instrumentations';
import { watchLibraryCoverage } from './library-coverage';
import { useDiagLogLevel } from './otel-log-level';
import { assemblePipeline, prepareForOtherSetups, spanLimitsWithRoomForCost } from './pipeline';
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
  /** The instrumentations installed (measureCost checks them; the jest setup patches with them). */
  readonly instrumentations: readonly Instrumentation[];
  readonly removeExitHooks: () => void;
  readonly connections: ExporterConnections;
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
    // OTEL_LOG_LEVEL from here on, not only from NodeSDK's constructor (see otel-log-level.ts).
    const giveBackDiag = useDiagLogLevel(config.logLevel);
    const instrumentations = [
      ...createInstrumentations(config.instrumentations, {
        expressLayerSpans: config.expressLayerSpans,
        fastifyHookSpans: config.fastifyHookSpans,
        koaLayerSpans: config.koaLayerSpans,
        maxClientTimeoutMs: config.maxClientTimeoutMs,
      }),
      ...(options.extraInstrumentations ?? []),
    ];
    // One line per known library loaded whose work cannot be counted, now and as libraries load.
    watchLibraryCoverage({
      instrumentations,
      extraInstrumentations: options.extraInstrumentations ?? [],
      enabledNames: config.instrumentations,
      enabledFrom: options.instrumentations !== undefined ? 'option' : 'environment',
    });
    // Processors and sampler come from pipeline.ts, shared with requestBudgetComponents().
    const { budgets, alerts, meterProvider, spanProcessors, sampler, probe, connections } = assemblePipeline(config, options, instrumentations);
    prepareForOtherSetups(instrumentations, probe);
    giveBackDiag();
    const sdk = new NodeSDK({
      ...(config.serviceName !== undefined ? { serviceName: config.serviceName } : {}),
      ...spanLimitsWithRoomForCost(config),
      instrumentations,
      spanProcessors,
      sampler,
      // Metrics go through request-budget's own provider (see meter-provider.ts); logs nowhere.
      metricReaders: [],
      logRecordProcessors: [],
    });
    sdk.start();
    const restoreFetch = config.instrumentations.includes('undici') ? wrapGlobalFetch() : () => {};
    const state: Running = {
      sdk,
      config,
      budgets,
      alerts,
      spanProcessors,
      meterProvider,
      restoreFetch,
      instrumentations,
      removeExitHooks: () => {},
      connections,
      stopping: undefined,
    };
    running = state;
    if (config.shutdownOnExit)
      Object.assign(state, { removeExitHooks: installExitHooks({ flush: () => flushOnSignal(state), shutdown }, EXIT_FLUSH_TIMEOUT_MS) });
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
      let boundReached = false;
      const work = (async () => {
        await state.sdk.shutdown();
        // After the SDK: the last spans' breaches and metrics are recorded by now.
        await Promise.all([state.alerts?.shutdown(), state.meterProvider?.shutdown()]);
      })().then(
        () => true,
        (error: unknown) => {
          // Past the bound, the failure is the one just reported: connections closed on purpose.
          if (!boundReached) reportProblem(`shutdown: ${describeError(error)}`);
          return true;
        },
      );
      // Bounded whatever the backends do: past the bound their connections are dropped, so a
      // backend that never answers cannot keep the process alive.
      const finished = await Promise.race([work, sleep(EXIT_FLUSH_TIMEOUT_MS, false, { ref: false })]);
      if (!finished) {
        boundReached = true;
        reportProblem(
          `shutdown: the trace backends did not finish within ${EXIT_FLUSH_TIMEOUT_MS} ms; their connections are closed and spans not yet exported are dropped`,
        );
        state.connections.destroy();
      }
    } finally {
      if (running === state) running = undefined;
      stopped = true;
    }
  })();
  return state.stopping;
}

/**
 * A stop signal the app handles itself: export what has ended (bounded), then let the exporters'
 * connections stop holding the process, so it exits when the app's own drain is done even if a
 * backend never answers.
 */
async function flushOnSignal(state: Running): Promise<void> {
  await Promise.race([flush(), sleep(EXIT_FLUSH_TIMEOUT_MS, undefined, { ref: false })]);
  state.connections.release();
}

/** Exports what has ended so far and delivers queued alerts, without stopping anything. */
export async function flush(): Promise<void> {
  const state = running;
  if (state === undefined) return;
  await Promise.allSettled([...state.spanProcessors.map((processor) => processor.forceFlush()), state.alerts?.flush(), state.meterProvider?.forceFlush()]);
}

/** The instrumentations installed by start(); empty when not running. */
export function activeInstrumentations(): readonly Instrumentation[] {
  return running?.instrumentations ?? [];
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
