/**
 * Builds the metric readers named by the configuration: a Prometheus scrape endpoint
 * (OTEL_METRICS_EXPORTER=prometheus), periodic OTLP export (otlp) or the console.
 */
import { OTLPMetricExporter as OtlpGrpcMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPMetricExporter as OtlpJsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as OtlpProtobufMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { ConsoleMetricExporter, PeriodicExportingMetricReader, type IMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { ResolvedConfig } from './config';
import type { ExporterConnections } from './exporter-connections';

/** OTLP over HTTP goes through `connections`, so a backend that never answers cannot hold exit. */
export function createMetricReaders(config: ResolvedConfig, connections: ExporterConnections): IMetricReader[] {
  const { metrics } = config;
  return metrics.exporters.map((name) => {
    if (name === 'prometheus') return new PrometheusExporter({ host: metrics.prometheusHost, port: metrics.prometheusPort });
    const exporter = name === 'console' ? new ConsoleMetricExporter() : otlpExporter(config, connections);
    return new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: metrics.exportIntervalMs });
  });
}

function otlpExporter(config: ResolvedConfig, connections: ExporterConnections): PushMetricExporter {
  const { otlpProtocol, otlpEndpoint } = config.metrics;
  if (otlpProtocol === 'grpc') return new OtlpGrpcMetricExporter({ url: otlpEndpoint });
  const http = { url: otlpEndpoint, httpAgentOptions: connections.agentFor };
  return otlpProtocol === 'http/json' ? new OtlpJsonMetricExporter(http) : new OtlpProtobufMetricExporter(http);
}
