/**
 * Runs a real Prometheus Alertmanager (the Debian `prometheus-alertmanager` package, 0.25 on
 * bookworm; `.ci/run` installs it) for end-to-end tests: one private instance per call, on a
 * free 127.0.0.1 port, with clustering off, a throwaway config and storage directory.
 *
 * What the v2 API shows (observed on 0.25.0, and read in api/v2/api.go `alertFilter`):
 *
 * - GET /api/v2/alerts lists only alerts whose `endsAt` is in the future. The first check in
 *   `alertFilter` drops any alert with `endsAt` before now, whatever the `active`, `silenced`,
 *   `inhibited` and `unprocessed` query flags say (all four default to true; {@link alerts}
 *   sends them anyway). There is no "resolved" state: `status.state` is
 *   `unprocessed | active | suppressed`.
 * - So a resolve (POST with `endsAt` in the past) makes the alert vanish from the list at once;
 *   /api/v2/alerts/groups hides it too. An alert whose `endsAt` is a little in the future stays
 *   listed as active until that moment, then vanishes without another POST.
 * - Resolved alerts are still counted: /metrics `alertmanager_alerts_received_total{status=
 *   "resolved",version="v2"}` goes up by one per resolved alert received, and `status="firing"`
 *   per firing one (endsAt unset or in the future). {@link RunningAlertmanager.receivedCounts}
 *   reads those; it is the only HTTP-visible trace of a resolve. (A webhook receiver with
 *   `send_resolved` would also see it, after group_wait; not configured here.)
 * - Identity is the label set (`fingerprint`). POSTing the same labels while the alert is
 *   listed merges into it: same fingerprint and `startsAt`, new `endsAt`, `updatedAt` and
 *   annotations. POSTing them after a resolve starts a fresh alert (new `startsAt`).
 * - With no `startsAt`/`endsAt` given, `startsAt` = receive time and `endsAt` = receive time +
 *   `resolve_timeout` exactly.
 * - Validation: an empty label set is refused (400 "at least one label pair required"), but a
 *   missing `alertname` is accepted, so our sender must enforce it. Labels with an empty value
 *   are dropped. Results are sorted by fingerprint.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll } from 'vitest';

/** The binary from the Debian package (on PATH as /usr/bin/prometheus-alertmanager). */
export const ALERTMANAGER_BIN = 'prometheus-alertmanager';

const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;

/** Options for {@link startAlertmanager}. */
export interface StartAlertmanagerOptions {
  /** `global.resolve_timeout`: how long an alert without `endsAt` stays active (default '5m'). */
  resolveTimeout?: string;
}

/** An alert as POSTed to /api/v2/alerts (PostableAlert). */
export interface PostableAlert {
  /** Identity of the alert; Alertmanager itself only requires one pair, we always send `alertname`. */
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  /** RFC 3339; defaults to the receive time. */
  startsAt?: string;
  /** RFC 3339; in the past = resolved. Defaults to receive time + resolve_timeout. */
  endsAt?: string;
  generatorURL?: string;
}

/** `status.state` of a listed alert; resolved alerts are not listed at all. */
export type AlertmanagerAlertState = 'unprocessed' | 'active' | 'suppressed';

/** An alert as read back from GET /api/v2/alerts (GettableAlert). */
export interface AlertmanagerAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  updatedAt: string;
  /** Hex hash of the label set. */
  fingerprint: string;
  /** Omitted by Alertmanager when the alert was posted without one. */
  generatorURL?: string;
  receivers: { name: string }[];
  status: {
    state: AlertmanagerAlertState;
    silencedBy: string[];
    inhibitedBy: string[];
  };
}

/** Alerts received over the v2 API so far, from /metrics. */
export interface ReceivedCounts {
  firing: number;
  resolved: number;
}

/** A started Alertmanager; see {@link startAlertmanager}. */
export interface RunningAlertmanager {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  readonly url: string;
  readonly pid: number;
  /** The temp dir holding the config and storage (removed by stop()). */
  readonly dir: string;
  /** Lines the process printed (it logs to stderr); live array. */
  readonly logs: string[];
  /** GET /api/v2/alerts; `filter` becomes `filter=name="value"` matchers (all must match). */
  alerts(filter?: Record<string, string>): Promise<AlertmanagerAlert[]>;
  /** POST /api/v2/alerts; throws with the response body unless 200. */
  postAlerts(alerts: PostableAlert[]): Promise<void>;
  /** `alertmanager_alerts_received_total` for the v2 API, by status. */
  receivedCounts(): Promise<ReceivedCounts>;
  /** SIGTERM, SIGKILL after a grace period, then remove the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

// Instances still running, so none outlives a failed test. Kept on globalThis because vitest
// re-evaluates this module per test file in the same worker; one exit hook is enough.
interface Registry {
  live: Map<ChildProcess, { dir: string; stop: () => Promise<void> }>;
}
const REGISTRY = Symbol.for('request-budget.test.alertmanager');
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

/** Stop every Alertmanager still running in this process (for afterEach/afterAll). */
export async function stopAllAlertmanagers(): Promise<void> {
  await Promise.all([...registry.live.values()].map(({ stop }) => stop()));
}

// vitest ends workers without an 'exit' event, so also stop leftovers when each file ends.
afterAll(() => stopAllAlertmanagers());

/** A port the OS reports free on 127.0.0.1 right now. */
async function freePort(): Promise<number> {
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

async function request(method: 'GET' | 'POST', url: string, body?: unknown): Promise<{ status: number; text: string }> {
  try {
    const res = await fetch(url, {
      method,
      signal: AbortSignal.timeout(5000),
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    return { status: res.status, text: await res.text() };
  } catch (err) {
    const cause = (err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new Error(`${method} ${url} failed: ${cause}`, { cause: err });
  }
}

/** Start a private Alertmanager and resolve once GET /-/ready answers 200. */
export async function startAlertmanager(options: StartAlertmanagerOptions = {}): Promise<RunningAlertmanager> {
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

async function startOnce({ resolveTimeout = '5m' }: StartAlertmanagerOptions, port: number): Promise<RunningAlertmanager> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alertmanager-'));
  const configFile = path.join(dir, 'alertmanager.yml');
  // JSON is valid YAML, so no quoting to get wrong. A receiver without notifiers drops
  // notifications; the API keeps the alerts, which is what tests read.
  const config = { global: { resolve_timeout: resolveTimeout }, route: { receiver: 'null' }, receivers: [{ name: 'null' }] };
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2));

  const url = `http://127.0.0.1:${port}`;
  const args = [
    `--config.file=${configFile}`,
    `--storage.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    // Empty disables HA gossip, which would otherwise listen on 0.0.0.0:9094.
    '--cluster.listen-address=',
  ];
  const child = spawn(ALERTMANAGER_BIN, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });

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

  const command = [ALERTMANAGER_BIN, ...args].join(' ');
  const fail = async (why: string): Promise<never> => {
    await stop();
    throw new Error(`Alertmanager did not become ready: ${why}\ncommand: ${command}\noutput:\n${tail(logs)}`);
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
      const hint = (outcome.err as NodeJS.ErrnoException).code === 'ENOENT' ? ' (install it: apt-get install prometheus-alertmanager, or run .ci/run)' : '';
      return fail(`cannot run ${ALERTMANAGER_BIN}: ${outcome.err.message}${hint}`);
    }
    if (outcome.kind === 'exited') return fail(`process ${exitInfo}`);
    if (outcome.status === 200) break;
    if (Date.now() > deadline) return fail(`GET /-/ready not 200 after ${READY_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  async function alerts(filter: Record<string, string> = {}): Promise<AlertmanagerAlert[]> {
    // All four flags default to true in 0.25; sent explicitly so nothing is hidden by a default.
    const params = new URLSearchParams({ active: 'true', silenced: 'true', inhibited: 'true', unprocessed: 'true' });
    // Matcher values are double-quoted with \" and \\ escapes, which JSON.stringify produces.
    for (const [name, value] of Object.entries(filter)) params.append('filter', `${name}=${JSON.stringify(value)}`);
    const res = await request('GET', `${url}/api/v2/alerts?${params}`);
    if (res.status !== 200) throw new Error(`GET /api/v2/alerts answered ${res.status}: ${res.text}`);
    return JSON.parse(res.text) as AlertmanagerAlert[];
  }

  async function postAlerts(list: PostableAlert[]): Promise<void> {
    const res = await request('POST', `${url}/api/v2/alerts`, list);
    if (res.status !== 200) throw new Error(`POST /api/v2/alerts answered ${res.status}: ${res.text}`);
  }

  async function receivedCounts(): Promise<ReceivedCounts> {
    const res = await request('GET', `${url}/metrics`);
    if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
    const count = (status: string): number => {
      const line = res.text
        .split('\n')
        .find((l) => l.startsWith(`alertmanager_alerts_received_total{status="${status}",version="v2"} `));
      if (!line) throw new Error(`no alertmanager_alerts_received_total{status="${status}",version="v2"} in /metrics`);
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    return { firing: count('firing'), resolved: count('resolved') };
  }

  return { url, pid: child.pid!, dir, logs, alerts, postAlerts, receivedCounts, stop };
}
