/**
 * The host app's exit is bounded whatever the trace backend does: a backend that accepts the
 * connection and never answers must not keep a finished script alive (OTLP retried for its full
 * timeout; the Zipkin exporter had none and never exited), and a backend that refuses is said on
 * stderr with its cause, once.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from './support/paths';
import { freePort } from './support/free-port';

let hanging: net.Server;
let hangingPort: number;
const held = new Set<net.Socket>();

beforeAll(async () => {
  // Accepts connections, reads the request, never answers.
  hanging = net.createServer((socket) => {
    held.add(socket);
    socket.on('data', () => {});
    socket.on('close', () => held.delete(socket));
  });
  await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
  hangingPort = (hanging.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const socket of held) socket.destroy();
  await new Promise((resolve) => hanging.close(resolve));
});

/** Runs the script under --require and resolves with how long it lived and what it printed. */
function runScript(env: Record<string, string>, limitMs = 40_000): Promise<{ ms: number; code: number | null; stderr: string[] }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(process.execPath, ['--require', '@request-budget/node/register', 'test/fixtures/short-script.js'], {
      cwd: repoRoot,
      env: { ...process.env, OTEL_SERVICE_NAME: 'short-script', REQUEST_BUDGET_SUMMARY: 'false', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ ms: performance.now() - started, code, stderr: stderr.split('\n').filter((line) => line !== '') });
    });
  });
}

describe('an app that drains on SIGTERM itself', () => {
  it('exits after its own drain plus at most the exporter timeout, with Zipkin never answering (it never exited)', async () => {
    const child = spawn(process.execPath, ['--require', '@request-budget/node/register', 'test/fixtures/drain-app.js'], {
      cwd: repoRoot,
      env: {
        ...process.env,
        OTEL_SERVICE_NAME: 'drain-app',
        OTEL_TRACES_EXPORTER: 'zipkin',
        OTEL_EXPORTER_ZIPKIN_ENDPOINT: `http://127.0.0.1:${hangingPort}/api/v2/spans`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number>((resolve) => child.on('close', () => resolve(performance.now())));
    try {
      const url = await new Promise<string>((resolve) =>
        child.stdout.on('data', (chunk: Buffer) => {
          const match = /listening on (http:\/\/\S+)/.exec(String(chunk));
          if (match) resolve(match[1]!);
        }),
      );
      await fetch(`${url}/once`).then((res) => res.text());
      const signalled = performance.now();
      child.kill('SIGTERM');
      const limit = new Promise<number>((resolve) => setTimeout(() => resolve(Infinity), 40_000).unref());
      const end = await Promise.race([exited, limit]);
      // The app's 1 s drain, then at most the Zipkin timeout (10 s) for the export still pending.
      expect(end - signalled).toBeLessThan(20_000);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('a finished script exits within the bound whatever the backend does', () => {
  it('Zipkin that never answers: exits (it never did), saying the backend did not finish', async () => {
    const run = await runScript({ OTEL_TRACES_EXPORTER: 'zipkin', OTEL_EXPORTER_ZIPKIN_ENDPOINT: `http://127.0.0.1:${hangingPort}/api/v2/spans` });
    expect(run.code).toBe(0);
    // 3 s bound plus start-up; without the bound the script was killed at the 40 s limit.
    expect(run.ms).toBeLessThan(15_000);
    expect(run.stderr).toContain(
      'request-budget: shutdown: the trace backends did not finish within 3000 ms; their connections are closed and spans not yet exported are dropped',
    );
  });

  it('OTLP that never answers, with a 30 s exporter timeout: exits within the bound, not after 30 s', async () => {
    const run = await runScript({
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${hangingPort}/v1/traces`,
      OTEL_EXPORTER_OTLP_TIMEOUT: '30000',
    });
    expect(run.code).toBe(0);
    expect(run.ms).toBeLessThan(15_000);
    expect(run.stderr.filter((line) => line.includes('did not finish within 3000 ms'))).toHaveLength(1);
  });

  it('a backend that refuses: one line with the cause, and a prompt exit', async () => {
    const closed = await freePort(); // nothing listens there: connections are refused
    const run = await runScript({ OTEL_TRACES_EXPORTER: 'zipkin', OTEL_EXPORTER_ZIPKIN_ENDPOINT: `http://127.0.0.1:${closed}/api/v2/spans` });
    expect(run.code).toBe(0);
    expect(run.ms).toBeLessThan(15_000);
    const lines = run.stderr.filter((line) => line.includes('could not export'));
    expect(lines).toEqual([
      `request-budget: could not export 2 span(s) to Zipkin http://127.0.0.1:${closed}/api/v2/spans: connect ECONNREFUSED 127.0.0.1:${closed} — ECONNREFUSED; they are dropped (said at most once a minute)`,
    ]);
  });
});
