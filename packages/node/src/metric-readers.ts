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

export function createMetricReaders(config: ResolvedConfig): IMetricReader[] {
  const { metrics } = config;
  return metrics.exporters.map((name) => {
    if (name === 'prometheus') return new PrometheusExporter({ host: metrics.prometheusHost, port: metrics.prometheusPort });
    const exporter = name === 'console' ? new ConsoleMetricExporter() : otlpExporter(config);
    return new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: metrics.exportIntervalMs });
  });
}

function otlpExporter(config: ResolvedConfig): PushMetricExporter {
  const { otlpProtocol, otlpEndpoint } = config.metrics;
  if (otlpProtocol === 'grpc') return new OtlpGrpcMetricExporter({ url: otlpEndpoint });
  if (otlpProtocol === 'http/json') return new OtlpJsonMetricExporter({ url: otlpEndpoint });
  return new OtlpProtobufMetricExporter({ url: otlpEndpoint });
}
