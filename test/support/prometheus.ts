/**
 * Runs a real Prometheus server (the Debian `prometheus` package, 2.42 on bookworm; `.ci/run`
 * installs it) for end-to-end tests: one private instance per call, on a free 127.0.0.1 port,
 * with a throwaway config, rule files and TSDB directory.
 *
 * Every target in `scrapeTargets` is scraped under the job `cost-app` (so the `job` label is the
 * service, as the dashboards assume); `extraJobs` adds more jobs, e.g. the same target again to
 * see how queries behave when two services export the same routes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll } from 'vitest';

/** The binary from the Debian package. */
export const PROMETHEUS_BIN = '/usr/bin/prometheus';

/** The job name of `scrapeTargets`. */
export const DEFAULT_JOB = 'cost-app';

const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;

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

/** A started Prometheus; see {@link startPrometheus}. */
export interface RunningPrometheus {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  readonly url: string;
  readonly pid: number;
  /** The temp dir holding the config and the TSDB (removed by stop()). */
  readonly dir: string;
  /** Lines the process printed (it logs to stderr); live array. */
  readonly logs: string[];
  /** GET /api/v1/query; throws with Prometheus's error (and the expression) unless it succeeds. */
  query(expr: string, time?: Date): Promise<QueryData>;
  /** `query` for expressions that yield an instant vector. */
  queryVector(expr: string, time?: Date): Promise<VectorSample[]>;
  /** GET /api/v1/targets: the active targets. */
  targets(): Promise<ScrapeTarget[]>;
  /** GET /api/v1/alerts: pending and firing alerts. */
  alerts(): Promise<PrometheusAlert[]>;
  /** SIGTERM, SIGKILL after a grace period, then remove the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

// Instances still running, so none outlives a failed test. Kept on globalThis because vitest
// re-evaluates this module per test file in the same worker; one exit hook is enough.
interface Registry {
  live: Map<ChildProcess, { dir: string; stop: () => Promise<void> }>;
}
const REGISTRY = Symbol.for('request-budget.test.prometheus');
const registry: Registry = ((globalThis as Record<symbol, unknown>)[REGISTRY] as Registry | undefined) ?? createRegistry();

function createRegistry(): Registry {
  const created: Registry = { live: new Map() };
  (globalThis as Record<symbol, unknown>)[REGISTRY] = created;
  process.once('exit', () => {
    for (const [child, { dir }] of created.live) {
      child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  return created;
}

/** Stop every Prometheus still running in this process (for afterEach/afterAll). */
export async function stopAllPrometheus(): Promise<void> {
  await Promise.all([...registry.live.values()].map(({ stop }) => stop()));
}

// vitest ends workers without an 'exit' event, so also stop leftovers when each file ends.
afterAll(() => stopAllPrometheus());

/** A port the OS reports free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function tail(lines: string[], n = 40): string {
  return lines.slice(-n).map((l) => `  ${l}`).join('\n');
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
  // The port is free when probed but could be taken before the binary binds it; retry then.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options, await freePort());
    } catch (err) {
      if (attempt < 3 && /address already in use/.test((err as Error).message)) continue;
      throw err;
    }
  }
}

async function startOnce(options: StartPrometheusOptions, port: number): Promise<RunningPrometheus> {
  const { scrapeTargets, scrapeIntervalSeconds = 1, ruleFiles = [], extraJobs = {} } = options;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prometheus-'));
  const configFile = path.join(dir, 'prometheus.yml');
  const interval = `${scrapeIntervalSeconds}s`;
  const jobs: Record<string, string[]> = { [DEFAULT_JOB]: scrapeTargets, ...extraJobs };
  // JSON is valid YAML, so no quoting to get wrong. The scrape timeout may not exceed the interval.
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: `${Math.min(scrapeIntervalSeconds, 10)}s` },
    rule_files: ruleFiles.map((file) => path.resolve(file)),
    scrape_configs: Object.entries(jobs).map(([job_name, targets]) => ({ job_name, static_configs: [{ targets }] })),
  };
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2));

  const url = `http://127.0.0.1:${port}`;
  const args = [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
  ];
  const child = spawn(PROMETHEUS_BIN, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });

  const logs: string[] = [];
  for (const stream of [child.stdout, child.stderr]) readline.createInterface({ input: stream }).on('line', (line) => logs.push(line));

  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) => {
    // 'close' fires after the output is drained, so the error text is complete.
    child.once('close', (code, signal) => {
      exitInfo = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      resolve();
    });
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (child.pid !== undefined && exitInfo === undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      registry.live.delete(child);
      fs.rmSync(dir, { recursive: true, force: true });
    })());
  registry.live.set(child, { dir, stop });

  const command = [PROMETHEUS_BIN, ...args].join(' ');
  const fail = async (why: string): Promise<never> => {
    await stop();
    throw new Error(`Prometheus did not become ready: ${why}\ncommand: ${command}\nconfig: ${JSON.stringify(config)}\noutput:\n${tail(logs)}`);
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const outcome = await Promise.race([
      spawnError.then((err) => ({ kind: 'error' as const, err })),
      exited.then(() => ({ kind: 'exited' as const })),
      fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) }).then(
        (res) => ({ kind: 'answer' as const, status: res.status }),
        () => ({ kind: 'answer' as const, status: 0 }),
      ),
    ]);
    if (outcome.kind === 'error') {
      const hint = (outcome.err as NodeJS.ErrnoException).code === 'ENOENT' ? ' (install it: apt-get install prometheus, or run .ci/run)' : '';
      return fail(`cannot run ${PROMETHEUS_BIN}: ${outcome.err.message}${hint}`);
    }
    if (outcome.kind === 'exited') return fail(`process ${exitInfo}`);
    if (outcome.status === 200) break;
    if (Date.now() > deadline) return fail(`GET /-/ready not 200 after ${READY_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

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

  return { url, pid: child.pid!, dir, logs, query, queryVector, targets, alerts, stop };
}
