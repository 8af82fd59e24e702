/**
 * request-budget inside an app's own OpenTelemetry setup: instead of `--require
 * @request-budget/node/register` (which starts a NodeSDK of its own), the app spreads
 * request-budget's components into the NodeSDK it already runs:
 *
 *     const sdk = new NodeSDK({
 *       serviceName: 'shop',
 *       ...requestBudgetComponents({ instrumentations: getNodeAutoInstrumentations() }),
 *     });
 *     sdk.start();
 *
 * Two setups in one process (two NodeSDKs, or auto-instrumentations-node's register beside
 * request-budget's) leave one of them receiving no spans and trace some calls twice; that is
 * detected and reported (global-registration.ts, duplicate-operations.ts), but one setup is the fix.
 */
import type { Instrumentation } from '@opentelemetry/instrumentation';
import type { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan, Sampler, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import type { AlertDispatcher } from '@request-budget/alerts';
import { addRequestBudgetHooks, knownInstrumentationNames } from './adopted-instrumentations';
import { resolveConfig } from './config';
import { describeError, reportProblem } from './diagnostics';
import { wrapGlobalFetch } from './http-client-timeouts';
import { createInstrumentations, type InstrumentationName } from './instrumentations';
import { watchLibraryCoverage } from './library-coverage';
import { assemblePipeline, prepareForOtherSetups, spanLimitsWithRoomForCost } from './pipeline';
import { activeConfig } from './sdk';
import type { RequestBudgetOptions } from './types';

/** Options of {@link requestBudgetComponents}: those of start(), less what the app's NodeSDK owns. */
export interface RequestBudgetComponentsOptions extends Omit<RequestBudgetOptions, 'instrumentations' | 'extraInstrumentations' | 'shutdownOnExit'> {
  /**
   * The instrumentations the app's NodeSDK runs, e.g. `getNodeAutoInstrumentations()`:
   * request-budget sets its hooks on those it knows (pg, mysql2: rows; http, undici: timeouts)
   * after any hook they have, and adds its companion instrumentations. Or names, as for start(),
   * for request-budget's own instances.
   * @default request-budget's own instances, as register installs them (env
   * OTEL_NODE_ENABLED_INSTRUMENTATIONS and OTEL_NODE_DISABLED_INSTRUMENTATIONS)
   */
  instrumentations?: readonly (Instrumentation | readonly Instrumentation[])[] | InstrumentationName[];
}

/** What to spread into `new NodeSDK({ ... })`. */
export interface RequestBudgetComponents {
  /**
   * Cost attribution, budgets, metrics, the `spanProcessors` option's own, the summary and the
   * exporters request-budget's configuration names (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*,
   * as for register). Put the app's own processors in the `spanProcessors` option rather than
   * beside these, so they run after cost attribution and are guarded.
   */
  readonly spanProcessors: SpanProcessor[];
  /** The configured sampler (the `sampler` option or OTEL_TRACES_SAMPLER), recording every span. */
  readonly sampler: Sampler;
  /** The instrumentations, with request-budget's hooks, and its companion instrumentations. */
  readonly instrumentations: Instrumentation[];
  /**
   * Present when OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT (or OTEL_ATTRIBUTE_COUNT_LIMIT) is set: that
   * limit raised by the room the cost record needs, so the SDK does not drop it.
   */
  readonly spanLimits?: { attributeCountLimit: number };
}

/**
 * The span processors, sampler and instrumentations that make an app's own NodeSDK record
 * request-budget's cost records. The SDK's shutdown() also stops request-budget's alerts and
 * metrics. Never throws: on failure it reports why and returns the app's instrumentations alone.
 */
export function requestBudgetComponents(options: RequestBudgetComponentsOptions = {}): RequestBudgetComponents {
  const given = options.instrumentations;
  const names = given !== undefined && given.every((item) => typeof item === 'string') ? given : undefined;
  const instances = given !== undefined && names === undefined ? (given as readonly (Instrumentation | readonly Instrumentation[])[]) : undefined;
  try {
    if (activeConfig() !== undefined) {
      reportProblem(
        "requestBudgetComponents() was called while request-budget's register (start()) runs: its components are left out, as the other SDK could not register anyway. Use one: the register, or requestBudgetComponents() in your NodeSDK",
      );
      return { spanProcessors: [], sampler: options.sampler ?? defaultSampler(), instrumentations: instances?.flat() ?? [] };
    }
    const config = resolveConfig({ ...options, instrumentations: names }, process.env, reportProblem);
    if (config.disabled) return { spanProcessors: [], sampler: config.sampler, instrumentations: instances?.flat() ?? [] };
    const instrumentations =
      instances !== undefined
        ? addRequestBudgetHooks(instances, { maxClientTimeoutMs: config.maxClientTimeoutMs })
        : createInstrumentations(config.instrumentations, {
            expressLayerSpans: config.expressLayerSpans,
            fastifyHookSpans: config.fastifyHookSpans,
            koaLayerSpans: config.koaLayerSpans,
            maxClientTimeoutMs: config.maxClientTimeoutMs,
          });
    const enabledNames = instances !== undefined ? knownInstrumentationNames(instrumentations) : config.instrumentations;
    watchLibraryCoverage({ instrumentations, enabledNames, enabledFrom: 'option' });
    const pipeline = assemblePipeline(config, options, instrumentations);
    prepareForOtherSetups(instrumentations, pipeline.probe);
    const restoreFetch = enabledNames.includes('undici') ? wrapGlobalFetch() : () => {};
    return {
      spanProcessors: [...pipeline.spanProcessors, new ComponentsLifecycle(pipeline.alerts, pipeline.meterProvider, restoreFetch)],
      sampler: pipeline.sampler,
      instrumentations,
      ...spanLimitsWithRoomForCost(config),
    };
  } catch (error) {
    reportProblem(`could not assemble request-budget's components, the app's SDK runs without them: ${describeError(error)}`);
    return { spanProcessors: [], sampler: options.sampler ?? defaultSampler(), instrumentations: instances?.flat() ?? [] };
  }
}

/** Flushes and stops what the components run beside the tracer provider, with it. */
class ComponentsLifecycle implements SpanProcessor {
  constructor(
    private readonly alerts: AlertDispatcher | undefined,
    private readonly meterProvider: MeterProvider | undefined,
    private readonly restoreFetch: () => void,
  ) {}

  onStart(_span: Span): void {}

  onEnd(_span: ReadableSpan): void {}

  async forceFlush(): Promise<void> {
    await Promise.allSettled([this.alerts?.flush(), this.meterProvider?.forceFlush()]);
  }

  async shutdown(): Promise<void> {
    this.restoreFetch();
    // Other processors shut down at the same time: the last spans ended before, so their
    // breaches are queued by now.
    const results = await Promise.allSettled([this.alerts?.shutdown(), this.meterProvider?.shutdown()]);
    for (const result of results) if (result.status === 'rejected') reportProblem(`shutdown: ${describeError(result.reason)}`);
  }
}

function defaultSampler(): Sampler {
  return resolveConfig({}, {}, () => {}).sampler;
}
