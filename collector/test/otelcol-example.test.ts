/**
 * The OpenTelemetry Collector examples, checked as data (no otelcol binary here): every component
 * a pipeline names is defined, traces are balanced by trace ID to the sidecars' gRPC port, and the
 * sidecars hand them to request-budget-collector's default OTLP/HTTP address.
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

  it('balances traces by trace ID onto the sidecars, which hand them to request-budget-collector', () => {
    const loadbalancing = gateway.exporters.loadbalancing as {
      routing_key: string;
      protocol: { otlp: unknown };
      resolver: { static: { hostnames: string[] } };
    };
    expect(loadbalancing.routing_key).toBe('traceID');
    expect(loadbalancing.protocol.otlp).toBeDefined();
    const sidecarGrpcPort = portOf(sidecar.receivers.otlp!.protocols.grpc!.endpoint);
    for (const hostname of loadbalancing.resolver.static.hostnames) expect(portOf(hostname)).toBe(sidecarGrpcPort);
    const otlphttp = sidecar.exporters.otlphttp as { endpoint: string; compression: string };
    const collector = resolveConfig([], {});
    if (collector.kind !== 'run') throw new Error('expected a run configuration');
    expect(otlphttp.endpoint).toBe(`http://${collector.config.listenHost}:${collector.config.listenPort}`);
    expect(otlphttp.compression).toBe('gzip');
  });
});
