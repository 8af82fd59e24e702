/**
 * Runs a real Prometheus server (the Debian `prometheus` package, 2.42 on bookworm; `.ci/run`
 * installs it) for end-to-end tests: one private instance per call, on a free 127.0.0.1 port,
 * with a throwaway config, rule files and TSDB directory.
 *
 * Every target in `scrapeTargets` is scraped under the job `cost-app` (so the `job` label is the
 * service, as the dashboards assume); `extraJobs` adds more jobs, e.g. the same target again to
 * see how queries behave when two services export the same routes.
 */
import path from 'node:path';
import { startService, stopServices, type ServiceProcess } from './service-process';

/** The binary from the Debian package. */
export const PROMETHEUS_BIN = '/usr/bin/prometheus';

/** The job name of `scrapeTargets`. */
export const DEFAULT_JOB = 'cost-app';

/** Options for {@link startPrometheus}. */
export interface StartPrometheusOptions {
  /** `host:port` targets scraped (at /metrics) under the job {@link DEFAULT_JOB}. */
  scrapeTargets: string[];
  /** Scrape and rule evaluation interval (default 1). */
  scrapeIntervalSeconds?: number;
  /** Rule files to load (absolute, or relative to the test's cwd). */
  ruleFiles?: string[];
  /** More jobs: job name → targets. */
  extraJobs?: Record<string, string[]>;
}

/** One sample of an instant vector. */
export interface VectorSample {
  metric: Record<string, string>;
  /** [unix seconds, value as Prometheus prints it ("NaN", "+Inf" included)] */
  value: [number, string];
}

/** `data` of GET /api/v1/query. */
export type QueryData =
  | { resultType: 'vector'; result: VectorSample[] }
  | { resultType: 'scalar' | 'string'; result: [number, string] }
  | { resultType: 'matrix'; result: { metric: Record<string, string>; values: [number, string][] }[] };

/** An active target from GET /api/v1/targets. */
export interface ScrapeTarget {
  labels: Record<string, string>;
  scrapePool: string;
  scrapeUrl: string;
  health: 'up' | 'down' | 'unknown';
  lastError: string;
  lastScrape: string;
}

/** An alert from GET /api/v1/alerts. */
export interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  activeAt: string;
  value: string;
}

/** A started Prometheus (it logs to stderr; its `dir` holds the config and the TSDB); see {@link startPrometheus}. */
export interface RunningPrometheus extends ServiceProcess {
  /** GET /api/v1/query; throws with Prometheus's error (and the expression) unless it succeeds. */
  query(expr: string, time?: Date): Promise<QueryData>;
  /** `query` for expressions that yield an instant vector. */
  queryVector(expr: string, time?: Date): Promise<VectorSample[]>;
  /** GET /api/v1/targets: the active targets. */
  targets(): Promise<ScrapeTarget[]>;
  /** GET /api/v1/alerts: pending and firing alerts. */
  alerts(): Promise<PrometheusAlert[]>;
}

/** Stop every Prometheus still running in this process (for afterEach/afterAll). */
export function stopAllPrometheus(): Promise<void> {
  return stopServices('Prometheus');
}

async function getJson(url: string): Promise<{ status: number; body: { status?: string; data?: unknown; error?: string; errorType?: string } }> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const cause = (err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new Error(`GET ${url} failed: ${cause}`, { cause: err });
  }
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    throw new Error(`GET ${url} answered ${res.status} with non-JSON: ${text.slice(0, 500)}`);
  }
}

/** Start a private Prometheus and resolve once GET /-/ready answers 200. */
export async function startPrometheus(options: StartPrometheusOptions): Promise<RunningPrometheus> {
  const { scrapeTargets, scrapeIntervalSeconds = 1, ruleFiles = [], extraJobs = {} } = options;
  const interval = `${scrapeIntervalSeconds}s`;
  const jobs: Record<string, string[]> = { [DEFAULT_JOB]: scrapeTargets, ...extraJobs };
  const service = await startService({
    name: 'Prometheus',
    bin: PROMETHEUS_BIN,
    aptPackage: 'prometheus',
    configFileName: 'prometheus.yml',
    // The scrape timeout may not exceed the interval.
    config: {
      global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: `${Math.min(scrapeIntervalSeconds, 10)}s` },
      rule_files: ruleFiles.map((file) => path.resolve(file)),
      scrape_configs: Object.entries(jobs).map(([job_name, targets]) => ({ job_name, static_configs: [{ targets }] })),
    },
    args: ({ dir, configFile, listenAddress }) => [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=${listenAddress}`,
    ],
  });
  const { url } = service;

  async function api<T>(pathAndQuery: string, what: string): Promise<T> {
    const { status, body } = await getJson(`${url}${pathAndQuery}`);
    if (status !== 200 || body.status !== 'success') {
      throw new Error(`${what} answered ${status}: ${body.errorType ?? ''} ${body.error ?? JSON.stringify(body)}`);
    }
    return body.data as T;
  }

  async function query(expr: string, time?: Date): Promise<QueryData> {
    const params = new URLSearchParams({ query: expr });
    if (time) params.set('time', String(time.getTime() / 1000));
    return api<QueryData>(`/api/v1/query?${params}`, `query ${JSON.stringify(expr)}`);
  }

  async function queryVector(expr: string, time?: Date): Promise<VectorSample[]> {
    const data = await query(expr, time);
    if (data.resultType !== 'vector') throw new Error(`query ${JSON.stringify(expr)} gave a ${data.resultType}, not a vector`);
    return data.result;
  }

  async function targets(): Promise<ScrapeTarget[]> {
    return (await api<{ activeTargets: ScrapeTarget[] }>('/api/v1/targets?state=active', 'GET /api/v1/targets')).activeTargets;
  }

  async function alerts(): Promise<PrometheusAlert[]> {
    return (await api<{ alerts: PrometheusAlert[] }>('/api/v1/alerts', 'GET /api/v1/alerts')).alerts;
  }

  return { ...service, query, queryVector, targets, alerts };
}
