/**
 * docker-compose.yml cannot be run here (no Docker engine), so its wiring is checked as data:
 * every mounted file exists, the app's endpoints name services that exist on the ports those
 * services listen on, and Prometheus scrapes the port the app serves metrics on.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { repoRoot } from './support/paths';

interface ComposeService {
  image?: string;
  build?: string;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: unknown;
}
const compose = parse(readFileSync(join(repoRoot, 'docker-compose.yml'), 'utf8')) as { services: Record<string, ComposeService> };
const services = compose.services;

describe('docker-compose.yml', () => {
  it('has every service users need, with pinned images', () => {
    expect(Object.keys(services).sort()).toEqual(['alertmanager', 'demo', 'grafana', 'jaeger', 'postgres', 'prometheus', 'traffic', 'zipkin']);
    for (const [name, service] of Object.entries(services)) {
      if (service.build !== undefined) continue;
      expect([name, service.image]).toEqual([name, expect.stringMatching(/:[\w.-]+$/)]);
      expect(service.image).not.toMatch(/:latest$/);
    }
  });

  it('mounts only files and folders that exist in the repository', () => {
    const mounts = Object.values(services).flatMap((service) => service.volumes ?? []);
    expect(mounts.length).toBeGreaterThan(0);
    for (const mount of mounts) {
      const source = mount.split(':')[0]!;
      expect([source, existsSync(join(repoRoot, source))]).toEqual([source, true]);
    }
  });

  it('points the demo app at the trace, alert and metric services on their ports', () => {
    const env = services.demo!.environment!;
    expect(env.OTEL_EXPORTER_OTLP_ENDPOINT).toBe('http://jaeger:4318');
    expect(env.OTEL_EXPORTER_ZIPKIN_ENDPOINT).toBe('http://zipkin:9411/api/v2/spans');
    expect(env.REQUEST_BUDGET_ALERTMANAGER_URL).toBe('http://alertmanager:9093');
    expect(env.OTEL_TRACES_EXPORTER).toBe('otlp,zipkin');
    expect(existsSync(join(repoRoot, env.REQUEST_BUDGET_FILE!))).toBe(true);

    const prometheus = parse(readFileSync(join(repoRoot, 'deploy/prometheus.yml'), 'utf8'));
    expect(prometheus.scrape_configs[0].static_configs[0].targets).toEqual([`demo:${env.OTEL_EXPORTER_PROMETHEUS_PORT}`]);
    expect(prometheus.alerting.alertmanagers[0].static_configs[0].targets).toEqual(['alertmanager:9093']);
    // The rule files it loads are the ones shipped in dashboards/prometheus (mounted at /etc/prometheus/rules).
    for (const file of prometheus.rule_files as string[]) {
      expect(existsSync(join(repoRoot, 'dashboards/prometheus', file.replace('/etc/prometheus/rules/', '')))).toBe(true);
    }
  });
});
