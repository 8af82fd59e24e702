/**
 * The OpenTelemetry Collector examples, checked as data (no otelcol binary here): every component
 * a pipeline names is defined, traces are balanced by trace ID straight to request-budget-collector's
 * default OTLP/gRPC port, and the optional TLS sidecar takes that port in its place (the collector's
 * own gRPC turned off) and hands the spans to its default OTLP/HTTP address.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { resolveConfig } from '../src/config';
import { repoRoot } from '../../test/support/paths';

type Otelcol = {
  receivers: Record<string, { protocols: Record<string, { endpoint: string }> }>;
  processors?: Record<string, unknown>;
  exporters: Record<string, Record<string, unknown>>;
  extensions?: Record<string, unknown>;
  service: { extensions?: string[]; pipelines: Record<string, { receivers: string[]; processors?: string[]; exporters: string[] }> };
};
const read = (name: string) => parse(readFileSync(path.join(repoRoot, 'collector', name), 'utf8')) as Otelcol;
const gateway = read('otelcol-example.yaml');
const sidecar = read('otelcol-sidecar-example.yaml');
const portOf = (endpoint: string) => Number(/:(\d+)$/.exec(endpoint)![1]);

describe('otelcol examples', () => {
  it.each([
    ['gateway', gateway],
    ['sidecar', sidecar],
  ] as const)('%s: every component a pipeline uses is defined', (_name, config) => {
    for (const pipeline of Object.values(config.service.pipelines)) {
      for (const receiver of pipeline.receivers) expect(config.receivers).toHaveProperty([receiver]);
      for (const processor of pipeline.processors ?? []) expect(config.processors).toHaveProperty([processor]);
      for (const exporter of pipeline.exporters) expect(config.exporters).toHaveProperty([exporter]);
    }
    for (const extension of config.service.extensions ?? []) expect(config.extensions).toHaveProperty([extension]);
  });

  const collector = resolveConfig([], {});
  if (collector.kind !== 'run') throw new Error('expected a run configuration');
  const defaultGrpcPort = collector.config.grpcListen?.port;

  it("balances traces by trace ID, over OTLP/gRPC, straight onto request-budget-collector's gRPC port", () => {
    const loadbalancing = gateway.exporters.loadbalancing as {
      routing_key: string;
      protocol: { otlp: unknown };
      resolver: { static: { hostnames: string[] } };
    };
    expect(loadbalancing.routing_key).toBe('traceID');
    expect(loadbalancing.protocol.otlp).toBeDefined();
    expect(defaultGrpcPort).toBe(4317);
    expect(loadbalancing.resolver.static.hostnames.length).toBeGreaterThan(1);
    for (const hostname of loadbalancing.resolver.static.hostnames) expect(portOf(hostname)).toBe(defaultGrpcPort);
  });

  it('the optional sidecar takes that port in its place and hands the spans to request-budget-collector over OTLP/HTTP', () => {
    expect(portOf(sidecar.receivers.otlp!.protocols.grpc!.endpoint)).toBe(defaultGrpcPort);
    // Both cannot hold 4317 on one host: the command the sidecar's header gives turns the collector's off.
    expect(readFileSync(path.join(repoRoot, 'collector', 'otelcol-sidecar-example.yaml'), 'utf8')).toMatch(
      /request-budget-collector --listen 127\.0\.0\.1:4318 --grpc-listen off /,
    );
    const otlphttp = sidecar.exporters.otlphttp as { endpoint: string; compression: string };
    expect(otlphttp.endpoint).toBe(`http://${collector.config.listenHost}:${collector.config.listenPort}`);
    expect(otlphttp.compression).toBe('gzip');
  });
});
