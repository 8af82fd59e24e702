/**
 * Builds the export pipeline named by the configuration: one batch span processor per exporter,
 * so a slow or unreachable backend never blocks the request path or the other exporters.
 */
import { OTLPTraceExporter as OtlpGrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { ZipkinExporter } from '@opentelemetry/exporter-zipkin';
import { BatchSpanProcessor, ConsoleSpanExporter, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace';
import type { ResolvedConfig } from './config';

export function createExportProcessors(config: ResolvedConfig): SpanProcessor[] {
  return config.traceExporters.map((name) => {
    const exporter = createExporter(name, config);
    return new BatchSpanProcessor({ exporter, ...definedOnly(config.batch) });
  });
}

function createExporter(name: ResolvedConfig['traceExporters'][number], config: ResolvedConfig): SpanExporter {
  switch (name) {
    case 'otlp':
      if (config.otlpProtocol === 'grpc') return new OtlpGrpcExporter({ url: config.otlpEndpoint });
      if (config.otlpProtocol === 'http/json') return new OtlpJsonExporter({ url: config.otlpEndpoint });
      return new OtlpProtobufExporter({ url: config.otlpEndpoint });
    case 'zipkin':
      return new ZipkinExporter({ url: config.zipkinEndpoint, serviceName: config.serviceName });
    case 'console':
      return new ConsoleSpanExporter();
  }
}

function definedOnly<T extends object>(settings: T): Partial<T> {
  return Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined)) as Partial<T>;
}
