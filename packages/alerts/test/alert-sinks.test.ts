import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { AlertmanagerAlertSink } from '../src/alertmanager-alert-sink';
import { LogAlertSink } from '../src/log-alert-sink';
import { WebhookAlertSink } from '../src/webhook-alert-sink';
import { closedPort, report } from './support';

describe('WebhookAlertSink', () => {
  it('drops a batch after its attempts run out and counts every failed attempt', async () => {
    const problems: string[] = [];
    const port = await closedPort();
    const sink = new WebhookAlertSink({ url: `http://127.0.0.1:${port}/hook`, maxAttempts: 3, initialBackoffMs: 10, reportProblem: (m) => problems.push(m) });
    for (let i = 0; i < 4; i += 1) sink.accept(report({ value: 11 + i }));
    await sink.flush();
    expect(sink.stats).toEqual({ delivered: 0, failed: 3, dropped: 4 });
    expect(problems).toEqual([
      expect.stringMatching(new RegExp(`^webhook: dropped 4 breach\\(es\\) after failing to post to http://127\\.0\\.0\\.1:${port}/hook: `)),
    ]);
  });

  it('bounds its queue and does not retry a 4xx', async () => {
    const statuses: number[] = [];
    const server = http.createServer((_req, res) => {
      statuses.push(400);
      res.statusCode = 400;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const sink = new WebhookAlertSink({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        maxQueued: 3,
        batchSize: 10,
        reportProblem: () => {},
      });
      for (let i = 0; i < 5; i += 1) sink.accept(report());
      await sink.flush();
      expect(statuses).toHaveLength(1);
      expect(sink.stats).toEqual({ delivered: 0, failed: 1, dropped: 5 });
    } finally {
      server.close();
    }
  });
});

describe('AlertmanagerAlertSink', () => {
  it('keeps one alert per service, route and metric, and caps how many it tracks', async () => {
    const port = await closedPort();
    const problems: string[] = [];
    const sink = new AlertmanagerAlertSink({ url: `http://127.0.0.1:${port}`, maxAlerts: 2, reportProblem: (m) => problems.push(m) });
    sink.accept(report());
    sink.accept(report({ value: 30 }));
    sink.accept(report({ metric: 'db.rows' }));
    sink.accept(report({ route: 'GET /orders' }));
    expect(sink.activeAlerts).toBe(2);
    expect(sink.stats.dropped).toBe(1);
    await sink.flush();
    await sink.flush();
    expect(sink.stats).toEqual({ delivered: 0, failed: 2, dropped: 1 });
    // Reported once per failure streak, not per attempt.
    expect(problems).toHaveLength(1);
    await sink.shutdown();
  });
});

describe('LogAlertSink', () => {
  it('writes one JSON line per breach in one write, and drops beyond its queue', async () => {
    const writes: string[] = [];
    const sink = new LogAlertSink({ write: (text) => writes.push(text), maxQueued: 2 });
    sink.accept(report());
    sink.accept(report({ metric: 'db.rows', value: 5000, limit: 1000, statement: 'SELECT ?' }));
    sink.accept(report());
    await sink.flush();
    expect(writes).toEqual([
      '{"event":"budget.breach","time":"2026-11-22T03:00:00.000Z","service":"svc","route":"GET /users/:id","rule":"GET /users/:id","metric":"db.queries","value":12,"limit":10,"severity":"warning","trace_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","span_id":"bbbbbbbbbbbbbbbb"}\n' +
        '{"event":"budget.breach","time":"2026-11-22T03:00:00.000Z","service":"svc","route":"GET /users/:id","rule":"GET /users/:id","metric":"db.rows","value":5000,"limit":1000,"severity":"warning","trace_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","span_id":"bbbbbbbbbbbbbbbb","statement":"SELECT ?"}\n',
    ]);
    expect(sink.stats).toEqual({ delivered: 2, failed: 0, dropped: 1 });
  });
});
