'use strict';
// Configuration (b) of the benchmark: plain OpenTelemetry, http + pg instrumentation, batch
// export over OTLP/protobuf — what a team would run without request-budget.
const { NodeSDK } = require('@opentelemetry/sdk-node');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
const { PgInstrumentation } = require('@opentelemetry/instrumentation-pg');

const sdk = new NodeSDK({
  serviceName: 'bench-plain-otel',
  instrumentations: [new HttpInstrumentation(), new PgInstrumentation()],
  spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: process.env.BENCH_OTLP_URL }) })],
  metricReaders: [],
  logRecordProcessors: [],
});
sdk.start();
process.once('SIGTERM', () => sdk.shutdown().finally(() => process.exit(0)));
