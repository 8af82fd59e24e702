/**
 * Send failures are said with their cause, the first at once and then at most once a minute with
 * the count since; "works again" once after a failure was said. The sinks run against a port that
 * refuses (real connections), on a clock the test moves.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { AlertmanagerAlertSink } from '../src/alertmanager-alert-sink';
import { FailureReport } from '../src/failure-report';
import { WebhookAlertSink } from '../src/webhook-alert-sink';
import { closedPort, report } from './support';

/** A clock the test moves by hand. */
function manualClock(startMs = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let time = startMs;
  return { now: () => time, advance: (ms) => (time += ms) };
}

describe('FailureReport', () => {
  it('says the first failure, then at most one line a minute with what failed since, and recovery once', () => {
    const lines: string[] = [];
    const clock = manualClock();
    const failures = new FailureReport((line) => lines.push(line), clock.now);
    const fail = (amount: number) => failures.failed(amount, ({ amount: total, times }) => `failed ${total} in ${times}`);
    const recover = () => failures.succeeded(({ amount, times }) => `works again after ${amount} in ${times}`);

    fail(3);
    for (let i = 0; i < 10; i += 1) {
      clock.advance(5000);
      fail(2);
    }
    // 50 s after the first line: still one.
    expect(lines).toEqual(['failed 3 in 1']);
    clock.advance(10_000);
    fail(1);
    // 60 s: the ten silent ones and this one, in one line.
    expect(lines).toEqual(['failed 3 in 1', 'failed 21 in 11']);
    clock.advance(1000);
    fail(4);
    recover();
    recover();
    expect(lines).toEqual(['failed 3 in 1', 'failed 21 in 11', 'works again after 4 in 1']);

    // A new streak within the minute of the last failure line: counted, said a minute after it.
    clock.advance(1000);
    fail(5);
    recover();
    expect(lines).toHaveLength(3);
    clock.advance(60_000);
    fail(6);
    expect(lines.at(-1)).toBe('failed 11 in 2');
  });
});

describe('AlertmanagerAlertSink failure lines', () => {
  it('names the cause (ECONNREFUSED) and says one line per minute with the attempts since', async () => {
    const port = await closedPort();
    const lines: string[] = [];
    const clock = manualClock();
    // A send interval longer than the test: only its own flushes send.
    const sink = new AlertmanagerAlertSink({
      url: `http://127.0.0.1:${port}`,
      sendIntervalMs: 600_000,
      reportProblem: (line) => lines.push(line),
      now: clock.now,
    });
    sink.accept(report());
    for (let i = 0; i < 5; i += 1) {
      await sink.flush();
      clock.advance(20_000);
    }
    // Attempts at 0, 20, 40 s (one line), 60 s (a line for the three since), 80 s (silent).
    expect(sink.stats.failed).toBe(5);
    expect(lines).toEqual([
      `alertmanager: could not send 1 alert(s) to http://127.0.0.1:${port}/api/v2/alerts: fetch failed (ECONNREFUSED); retrying with backoff (said at most once a minute)`,
      `alertmanager: could not send 1 alert(s) to http://127.0.0.1:${port}/api/v2/alerts: fetch failed (ECONNREFUSED) (3 failed attempts since the last line); retrying with backoff (said at most once a minute)`,
    ]);
    await sink.shutdown();
  });
});

describe('WebhookAlertSink failure lines', () => {
  it('says the first dropped batch with its cause, then one line a minute with the breaches dropped since, not one per batch', async () => {
    const port = await closedPort();
    const lines: string[] = [];
    const clock = manualClock();
    const sink = new WebhookAlertSink({
      url: `http://127.0.0.1:${port}/hook`,
      maxAttempts: 1,
      reportProblem: (line) => lines.push(line),
      now: clock.now,
    });
    for (let batch = 0; batch < 6; batch += 1) {
      sink.accept(report());
      sink.accept(report({ metric: 'db.rows' }));
      await sink.flush();
      clock.advance(15_000);
    }
    // Batches at 0, 15, 30, 45 s (one line), 60 s (a line for the four since), 75 s (silent).
    expect(sink.stats).toEqual({ delivered: 0, failed: 6, dropped: 12 });
    expect(lines).toEqual([
      `webhook: dropped 2 breach(es) after failing to post to http://127.0.0.1:${port}/hook: fetch failed (ECONNREFUSED) (said at most once a minute)`,
      `webhook: dropped 8 breach(es) in 4 batches since the last line after failing to post to http://127.0.0.1:${port}/hook: fetch failed (ECONNREFUSED) (said at most once a minute)`,
    ]);
  });

  it('says once that posting works again, with what was dropped since the last line', async () => {
    let failuresLeft = 3;
    const server = http.createServer((req, res) => {
      req.resume();
      res.statusCode = failuresLeft-- > 0 ? 503 : 200;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    try {
      const lines: string[] = [];
      const sink = new WebhookAlertSink({ url, maxAttempts: 1, reportProblem: (line) => lines.push(line), now: manualClock().now });
      for (let batch = 0; batch < 5; batch += 1) {
        sink.accept(report());
        await sink.flush();
      }
      expect(sink.stats).toEqual({ delivered: 2, failed: 3, dropped: 3 });
      expect(lines).toEqual([
        `webhook: dropped 1 breach(es) after failing to post to ${url}: HTTP 503 (said at most once a minute)`,
        `webhook: posting to ${url} works again (2 more breach(es) dropped before)`,
      ]);
    } finally {
      server.close();
    }
  });
});
