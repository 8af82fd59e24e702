'use strict';
// Plain OpenTelemetry for the benchmarks — what a team would run without request-budget: the
// instrumentations named in BENCH_INSTRUMENTATIONS (default http,pg; empty for none), batch export over
// OTLP/protobuf to BENCH_OTLP_URL. The sampler is NodeSDK's own reading of the standard
// OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (configurations (b), (e), (f) and the floor steps).
const { NodeSDK } = require('@opentelemetry/sdk-node');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { ExpressInstrumentation, ExpressLayerType } = require('@opentelemetry/instrumentation-express');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
const { PgInstrumentation } = require('@opentelemetry/instrumentation-pg');

const FACTORIES = {
  http: () => new HttpInstrumentation(),
  pg: () => new PgInstrumentation(),
  // Route templates from express's layers, no span per layer (as request-budget did before naming routes itself).
  express: () => new ExpressInstrumentation({ ignoreLayersType: [ExpressLayerType.MIDDLEWARE, ExpressLayerType.ROUTER, ExpressLayerType.REQUEST_HANDLER] }),
};

const names = (process.env.BENCH_INSTRUMENTATIONS ?? 'http,pg')
  .split(',')
  .map((name) => name.trim())
  .filter(Boolean);
for (const name of names) {
  if (!(name in FACTORIES)) throw new Error(`BENCH_INSTRUMENTATIONS: unknown instrumentation ${name} (known: ${Object.keys(FACTORIES).join(', ')})`);
}

const sdk = new NodeSDK({
  serviceName: 'bench-plain-otel',
  instrumentations: names.map((name) => FACTORIES[name]()),
  spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: process.env.BENCH_OTLP_URL }) })],
  metricReaders: [],
  logRecordProcessors: [],
});
sdk.start();
process.once('SIGTERM', () => sdk.shutdown().finally(() => process.exit(0)));
