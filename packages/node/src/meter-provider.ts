/**
 * The meter provider for request-budget's cost metrics. It is ours, not the global one:
 * registering it globally would also switch on every instrumentation's own metrics (HTTP server
 * durations, pg connection gauges updated on each checkout), a cost per request that plain
 * tracing does not pay. REQUEST_BUDGET_INSTRUMENTATION_METRICS=true shares it with them.
 */
import { metrics, type Meter } from '@opentelemetry/api';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { defaultResource, detectResources, envDetector, hostDetector, processDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { ResolvedConfig } from './config';
import type { ExporterConnections } from './exporter-connections';
import { createMetricReaders } from './metric-readers';
import { UNKNOWN_SERVICE, serviceNameOf } from './service-label';

/** The cost meter provider, request-budget's meter on it, and the service its metrics are labelled with. */
export interface CostMeterProvider {
  readonly provider: MeterProvider;
  readonly meter: Meter;
  /** The resource's service.name: the `service` label of metrics not read from a span. */
  readonly service: string;
}

/** A meter provider with the configured readers, or undefined when metrics are not exported. */
export function createCostMeterProvider(
  config: ResolvedConfig,
  instrumentations: readonly Instrumentation[],
  connections: ExporterConnections,
): CostMeterProvider | undefined {
  if (config.metrics.exporters.length === 0) return undefined;
  let resource = defaultResource().merge(detectResources({ detectors: [envDetector, processDetector, hostDetector] }));
  if (config.serviceName !== undefined) resource = resource.merge(resourceFromAttributes({ 'service.name': config.serviceName }));
  const provider = new MeterProvider({ resource, readers: createMetricReaders(config, connections) });
  if (config.metrics.instrumentationMetrics) {
    metrics.setGlobalMeterProvider(provider);
    for (const instrumentation of instrumentations) instrumentation.setMeterProvider(provider);
  }
  return { provider, meter: provider.getMeter('@request-budget/node'), service: serviceNameOf(resource) ?? UNKNOWN_SERVICE };
}
