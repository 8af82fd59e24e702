/**
 * Builds the export pipeline named by the configuration: one batch span processor per exporter,
 * so a slow or unreachable backend never blocks the request path or the other exporters. Every
 * HTTP exporter sends through {@link ExporterConnections} (dropped at the exit bound) and has a
 * timeout; a failing export is said on stderr with its cause, at most once a minute.
 */
import { OTLPTraceExporter as OtlpGrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { ZipkinExporter } from '@opentelemetry/exporter-zipkin';
import { BatchSpanProcessor, ConsoleSpanExporter, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace';
import type { ResolvedConfig } from './config';
import { reportProblem } from './diagnostics';
import type { ExporterConnections } from './exporter-connections';
import type { FailureMetrics } from './failure-metrics';
import { ReportingExporter } from './reporting-exporter';
import { useTimedZipkinSender } from './zipkin-sender';

/** `failures` counts the spans each exporter could not export (the cost meter provider's metric). */
export function createExportProcessors(config: ResolvedConfig, connections: ExporterConnections, failures?: FailureMetrics): SpanProcessor[] {
  return config.traceExporters.map((name) => {
    const exporter = new ReportingExporter(createExporter(name, config, connections), describeTarget(name, config), reportProblem, {
      ...(failures !== undefined ? { onFailedSpans: (spans: number) => failures.exportFailed(name, spans) } : {}),
    });
    return new BatchSpanProcessor({ exporter, ...definedOnly(config.batch) });
  });
}

function createExporter(name: ResolvedConfig['traceExporters'][number], config: ResolvedConfig, connections: ExporterConnections): SpanExporter {
  switch (name) {
    case 'otlp': {
      if (config.otlpProtocol === 'grpc') return new OtlpGrpcExporter({ url: config.otlpEndpoint });
      const http = { url: config.otlpEndpoint, httpAgentOptions: connections.agentFor };
      return config.otlpProtocol === 'http/json' ? new OtlpJsonExporter(http) : new OtlpProtobufExporter(http);
    }
    case 'zipkin': {
      const exporter = new ZipkinExporter({ url: config.zipkinEndpoint, serviceName: config.serviceName });
      if (!useTimedZipkinSender(exporter, { url: config.zipkinEndpoint, timeoutMs: config.zipkinTimeoutMs, agentFor: connections.agentFor })) {
        reportProblem(
          'this @opentelemetry/exporter-zipkin has no sender request-budget can give a timeout: a Zipkin that does not answer may hold connections and delay exit',
        );
      }
      return exporter;
    }
    case 'console':
      return new ConsoleSpanExporter();
  }
}

function describeTarget(name: ResolvedConfig['traceExporters'][number], config: ResolvedConfig): string {
  if (name === 'otlp') return `OTLP (${config.otlpProtocol}) ${config.otlpEndpoint}`;
  if (name === 'zipkin') return `Zipkin ${config.zipkinEndpoint}`;
  return 'console';
}

function definedOnly<T extends object>(settings: T): Partial<T> {
  return Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined)) as Partial<T>;
}
