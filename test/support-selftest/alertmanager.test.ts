import fs from 'node:fs';
import os from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { startAlertmanager, stopAllAlertmanagers, type PostableAlert } from '../support/alertmanager';
import { get } from '../support/http';

const labels = {
  alertname: 'RequestBudgetExceeded',
  service: 's',
  route: 'GET /x',
  metric: 'db.queries',
  severity: 'warning',
};

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const iso = (offsetMs: number) => new Date(Date.now() + offsetMs).toISOString();

afterEach(() => stopAllAlertmanagers());

describe('startAlertmanager', () => {
  it('runs a private instance on loopback with clustering off and the given resolve_timeout', async () => {
    const am = await startAlertmanager({ resolveTimeout: '7m' });
    expect(am.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const status = JSON.parse((await get(`${am.url}/api/v2/status`)).body);
    expect(status.cluster.status).toBe('disabled');
    expect(status.config.original).toMatch(/resolve_timeout: 7m/);
    expect(am.logs.join('\n')).toMatch(/Listening on.*127\.0\.0\.1/);
  });

  it('keeps one alert per label set, hides it once resolved, and counts the resolve', async () => {
    const am = await startAlertmanager({ resolveTimeout: '7m' });
    const first: PostableAlert = {
      labels,
      annotations: { summary: 'db.queries 41>10' },
      generatorURL: 'http://127.0.0.1/trace/1',
    };

    await am.postAlerts([first]);
    const [fired, ...rest] = await am.alerts();
    expect(rest).toEqual([]);
    expect(fired!.labels).toEqual(labels);
    expect(fired!.annotations).toEqual({ summary: 'db.queries 41>10' });
    expect(fired!.generatorURL).toBe('http://127.0.0.1/trace/1');
    expect(fired!.status).toEqual({ state: 'active', silencedBy: [], inhibitedBy: [] });
    expect(fired!.receivers).toEqual([{ name: 'null' }]);
    expect(fired!.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    // Without endsAt, Alertmanager sets it to receive time + resolve_timeout exactly.
    expect(Date.parse(fired!.endsAt) - Date.parse(fired!.startsAt)).toBe(7 * 60_000);

    // Same labels again: merged into the same alert, not a second one.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await am.postAlerts([{ ...first, annotations: { summary: 'db.queries 50>10' } }]);
    const again = await am.alerts();
    expect(again).toHaveLength(1);
    expect(again[0]!.fingerprint).toBe(fired!.fingerprint);
    expect(again[0]!.startsAt).toBe(fired!.startsAt);
    expect(Date.parse(again[0]!.updatedAt)).toBeGreaterThan(Date.parse(fired!.updatedAt));
    expect(again[0]!.annotations).toEqual({ summary: 'db.queries 50>10' });
    expect(await am.receivedCounts()).toEqual({ firing: 2, resolved: 0 });

    // Resolve: endsAt in the past. The alert is gone from every listing at once (no
    // "resolved" state exists); only the received counter shows the resolve arrived.
    await am.postAlerts([{ labels, endsAt: iso(-60_000) }]);
    expect(await am.alerts()).toEqual([]);
    expect(await am.alerts(labels)).toEqual([]);
    expect(JSON.parse((await get(`${am.url}/api/v2/alerts/groups`)).body)).toEqual([]);
    expect(await am.receivedCounts()).toEqual({ firing: 2, resolved: 1 });

    // Firing again after a resolve starts a fresh alert (same fingerprint, new startsAt).
    await am.postAlerts([first]);
    const refired = await am.alerts();
    expect(refired).toHaveLength(1);
    expect(refired[0]!.fingerprint).toBe(fired!.fingerprint);
    expect(Date.parse(refired[0]!.startsAt)).toBeGreaterThan(Date.parse(fired!.startsAt));

    // Different labels: a second alert.
    const otherLabels = { ...labels, route: 'POST /orders', severity: 'critical' };
    await am.postAlerts([{ labels: otherLabels }]);
    const both = await am.alerts();
    expect(both).toHaveLength(2);
    expect(both.map((a) => a.labels).sort((a, b) => a.route!.localeCompare(b.route!))).toEqual([labels, otherLabels]);
    expect(both.every((a) => a.status.state === 'active')).toBe(true);
    // Posted without generatorURL: the field is left out, not empty.
    expect(both.find((a) => a.labels.route === 'POST /orders')).not.toHaveProperty('generatorURL');

    // Filters are exact matchers; values with spaces and slashes are quoted.
    expect((await am.alerts({ route: 'GET /x' })).map((a) => a.labels)).toEqual([labels]);
    expect((await am.alerts({ alertname: 'RequestBudgetExceeded', severity: 'critical' })).map((a) => a.labels)).toEqual([otherLabels]);
    expect(await am.alerts({ route: 'GET /' })).toEqual([]);
  });

  it('lists an alert until its future endsAt passes, then drops it without another POST', async () => {
    const am = await startAlertmanager();
    const endsAt = iso(1500);
    await am.postAlerts([{ labels: { alertname: 'ShortLived' }, endsAt }]);
    const [listed] = await am.alerts();
    expect(listed!.status.state).toBe('active');
    expect(listed!.endsAt).toBe(endsAt);
    await new Promise((resolve) => setTimeout(resolve, Date.parse(endsAt) - Date.now() + 100));
    expect(await am.alerts()).toEqual([]);
    // A future endsAt counts as firing when received.
    expect(await am.receivedCounts()).toEqual({ firing: 1, resolved: 0 });
  });

  it('accepts an alert without alertname but refuses an empty label set', async () => {
    const am = await startAlertmanager();
    await am.postAlerts([{ labels: { service: 's' } }]);
    expect((await am.alerts()).map((a) => a.labels)).toEqual([{ service: 's' }]);
    await expect(am.postAlerts([{ labels: {} }])).rejects.toThrow(/400.*at least one label pair required/);
  });

  it('stop() ends the process and removes its temp dir', async () => {
    const am = await startAlertmanager();
    expect(isAlive(am.pid)).toBe(true);
    await am.stop();
    expect(isAlive(am.pid)).toBe(false);
    expect(fs.existsSync(am.dir)).toBe(false);
    await expect(get(`${am.url}/-/ready`, { timeoutMs: 1000 })).rejects.toThrow(/ECONNREFUSED/);
    // Not asserted: Alertmanager's "exiting gracefully" line. It installs its signal handler
    // after it starts listening, so a SIGTERM right after readiness ends it without the line.
    await am.stop(); // a second call is harmless
  });

  it('fails with the process output when the config is rejected, leaving nothing behind', async () => {
    const before = new Set(fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith('alertmanager-')));
    const err = await startAlertmanager({ resolveTimeout: 'soon' }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/did not become ready: process exited with code 1/);
    expect((err as Error).message).toMatch(/err="not a valid duration string: \\"soon\\""/);
    const after = fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith('alertmanager-') && !before.has(name));
    expect(after).toEqual([]);
  });
});
