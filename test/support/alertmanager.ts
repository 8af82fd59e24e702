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
import path from 'node:path';
import { startService, stopServices, type ServiceProcess } from './service-process';

/** The binary from the Debian package (on PATH as /usr/bin/prometheus-alertmanager). */
export const ALERTMANAGER_BIN = 'prometheus-alertmanager';

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

/** A started Alertmanager (it logs to stderr); see {@link startAlertmanager}. */
export interface RunningAlertmanager extends ServiceProcess {
  /** GET /api/v2/alerts; `filter` becomes `filter=name="value"` matchers (all must match). */
  alerts(filter?: Record<string, string>): Promise<AlertmanagerAlert[]>;
  /** POST /api/v2/alerts; throws with the response body unless 200. */
  postAlerts(alerts: PostableAlert[]): Promise<void>;
  /** `alertmanager_alerts_received_total` for the v2 API, by status. */
  receivedCounts(): Promise<ReceivedCounts>;
}

/** Stop every Alertmanager still running in this process (for afterEach/afterAll). */
export function stopAllAlertmanagers(): Promise<void> {
  return stopServices('Alertmanager');
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
export async function startAlertmanager({ resolveTimeout = '5m' }: StartAlertmanagerOptions = {}): Promise<RunningAlertmanager> {
  const service = await startService({
    name: 'Alertmanager',
    bin: ALERTMANAGER_BIN,
    aptPackage: 'prometheus-alertmanager',
    configFileName: 'alertmanager.yml',
    // A receiver without notifiers drops notifications; the API keeps the alerts, which is what tests read.
    config: { global: { resolve_timeout: resolveTimeout }, route: { receiver: 'null' }, receivers: [{ name: 'null' }] },
    args: ({ dir, configFile, listenAddress }) => [
      `--config.file=${configFile}`,
      `--storage.path=${path.join(dir, 'data')}`,
      `--web.listen-address=${listenAddress}`,
      // Empty disables HA gossip, which would otherwise listen on 0.0.0.0:9094.
      '--cluster.listen-address=',
    ],
  });
  const { url } = service;

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
      const line = res.text.split('\n').find((l) => l.startsWith(`alertmanager_alerts_received_total{status="${status}",version="v2"} `));
      if (!line) throw new Error(`no alertmanager_alerts_received_total{status="${status}",version="v2"} in /metrics`);
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    return { firing: count('firing'), resolved: count('resolved') };
  }

  return { ...service, alerts, postAlerts, receivedCounts };
}
