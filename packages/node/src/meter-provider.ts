/**
 * The meter provider for request-budget's cost metrics. It is ours, not the global one:
 * registering it globally would also switch on every instrumentation's own metrics (HTTP server
 * durations, pg connection gauges updated on each checkout), a cost per request that plain
 * tracing does not pay. REQUEST_BUDGET_INSTRUMENTATION_METRICS=true shares it with them.
 * The cost metrics processor is made here too: each reader takes its metrics when it is made.
 */
import { metrics, type Meter } from '@opentelemetry/api';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { defaultResource, detectResources, envDetector, hostDetector, processDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { BudgetRuleSet } from '@request-budget/core';
import type { ResolvedConfig } from './config';
import { CostMetricsProcessor } from './cost-metrics-processor';
import type { ExporterConnections } from './exporter-connections';
import { createMetricReaders } from './metric-readers';
import { UNKNOWN_SERVICE, serviceNameOf } from './service-label';

/** The cost meter provider, request-budget's meter on it, the service its metrics are labelled with, and the cost metrics. */
export interface CostMeterProvider {
  readonly provider: MeterProvider;
  readonly meter: Meter;
  /** The resource's service.name: the `service` label of metrics not read from a span. */
  readonly service: string;
  /** The span processor whose per-route cost metrics every reader of `provider` reports. */
  readonly costMetrics: CostMetricsProcessor;
}

/** A meter provider with the configured readers, or undefined when metrics are not exported. `rules` give the routes' limits. */
export function createCostMeterProvider(
  config: ResolvedConfig,
  instrumentations: readonly Instrumentation[],
  connections: ExporterConnections,
  rules?: BudgetRuleSet,
): CostMeterProvider | undefined {
  if (config.metrics.exporters.length === 0) return undefined;
  let resource = defaultResource().merge(detectResources({ detectors: [envDetector, processDetector, hostDetector] }));
  if (config.serviceName !== undefined) resource = resource.merge(resourceFromAttributes({ 'service.name': config.serviceName }));
  const service = serviceNameOf(resource) ?? UNKNOWN_SERVICE;
  const costMetrics = new CostMetricsProcessor({ defaultService: service, ...(rules !== undefined ? { rules } : {}) });
  const provider = new MeterProvider({ resource, readers: createMetricReaders(config, connections, costMetrics) });
  if (config.metrics.instrumentationMetrics) {
    metrics.setGlobalMeterProvider(provider);
    for (const instrumentation of instrumentations) instrumentation.setMeterProvider(provider);
  }
  return { provider, meter: provider.getMeter('@request-budget/node'), service, costMetrics };
}
