/**
 * Builds the metric readers named by the configuration: a Prometheus scrape endpoint
 * (OTEL_METRICS_EXPORTER=prometheus), periodic OTLP export (otlp) or the console. Each reader
 * reports the cost metrics through a producer of its own, with its exporter's temporality.
 */
import { OTLPMetricExporter as OtlpGrpcMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPMetricExporter as OtlpJsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as OtlpProtobufMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { ConsoleMetricExporter, PeriodicExportingMetricReader, type IMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { ResolvedConfig } from './config';
import type { CostMetricsProcessor } from './cost-metrics-processor';
import { reportProblem } from './diagnostics';
import type { ExporterConnections } from './exporter-connections';

/** OTLP over HTTP goes through `connections`, so a backend that never answers cannot hold exit. */
export function createMetricReaders(config: ResolvedConfig, connections: ExporterConnections, costMetrics: CostMetricsProcessor): IMetricReader[] {
  const { metrics } = config;
  return metrics.exporters.map((name) => {
    if (name === 'prometheus') {
      const { prometheusHost: host, prometheusPort: port } = metrics;
      // Prometheus reads cumulative values, whatever the instrument.
      return new PrometheusExporter({ host, port, metricProducers: [costMetrics.metricProducer()] }, (error) => {
        if (error) reportProblem(describeListenError(error, host, port));
      });
    }
    const exporter = name === 'console' ? new ConsoleMetricExporter() : otlpExporter(config, connections);
    // The reader asks the exporter for each instrument type's temporality (OTLP: OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE).
    const temporality = exporter.selectAggregationTemporality?.bind(exporter);
    return new PeriodicExportingMetricReader({
      exporter,
      exportIntervalMillis: metrics.exportIntervalMs,
      metricProducers: [costMetrics.metricProducer(temporality)],
    });
  });
}

/**
 * The exporter only tells the `diag` logger, silent by default, when its server cannot listen:
 * the app would run on with no /metrics and nothing said. One line, naming the setting to change.
 */
function describeListenError(error: Error, host: string, port: number): string {
  const code = (error as Error & { code?: string }).code;
  const fix =
    code === 'EADDRINUSE'
      ? `the port is already in use; the app runs on without them — set OTEL_EXPORTER_PROMETHEUS_PORT to a free port`
      : `${code ?? error.message}; the app runs on without them — check OTEL_EXPORTER_PROMETHEUS_HOST and OTEL_EXPORTER_PROMETHEUS_PORT`;
  return `cannot serve Prometheus metrics on ${host}:${port}: ${fix}`;
}

function otlpExporter(config: ResolvedConfig, connections: ExporterConnections): PushMetricExporter {
  const { otlpProtocol, otlpEndpoint } = config.metrics;
  if (otlpProtocol === 'grpc') return new OtlpGrpcMetricExporter({ url: otlpEndpoint });
  const http = { url: otlpEndpoint, httpAgentOptions: connections.agentFor };
  return otlpProtocol === 'http/json' ? new OtlpJsonMetricExporter(http) : new OtlpProtobufMetricExporter(http);
}
