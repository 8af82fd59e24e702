/**
 * OTEL_LOG_LEVEL honoured as the OpenTelemetry SDKs honour it: OpenTelemetry's own `diag` lines
 * on the console at that level, from the first thing request-budget builds (NodeSDK's
 * constructor set the logger only after the exporters and instrumentations were made, so what
 * they said went nowhere); nothing of the kind when it is unset; a bad value said once.
 */
import { spawn } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from './support/paths';
import { freePort } from './support/free-port';

/** A port nothing listens on: the OTLP endpoint refuses. */
let refusing: number;
beforeAll(async () => {
  refusing = await freePort();
});

interface Run {
  readonly code: number | null;
  readonly stdout: string[];
  readonly stderr: string[];
}

/** A script that serves one request to itself and ends 1.5 s later, under --require, exporting OTLP to the refusing port. */
function runScript(env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--require', '@request-budget/node/register', 'test/fixtures/linger-script.js'], {
      cwd: repoRoot,
      env: {
        ...withoutOtelLogLevel(process.env),
        OTEL_SERVICE_NAME: 'short-script',
        REQUEST_BUDGET_SUMMARY: 'false',
        OTEL_TRACES_EXPORTER: 'otlp',
        OTEL_METRICS_EXPORTER: 'none',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${refusing}/v1/traces`,
        // The batch goes out at once and the exporter gives up within 500 ms: while the app runs.
        OTEL_BSP_SCHEDULE_DELAY: '100',
        OTEL_EXPORTER_OTLP_TIMEOUT: '500',
        // Batch settings the SDK corrects, saying so on diag while request-budget builds its pipeline.
        OTEL_BSP_MAX_QUEUE_SIZE: '100',
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '200',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(killer);
      const lines = (text: string) => text.split('\n').filter((line) => line !== '');
      resolve({ code, stdout: lines(stdout), stderr: lines(stderr) });
    });
  });
}

function withoutOtelLogLevel(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { OTEL_LOG_LEVEL: _ignored, ...rest } = env;
  return rest;
}

const BSP_CORRECTED = 'BatchSpanProcessor: maxExportBatchSize must be smaller or equal to maxQueueSize, setting maxExportBatchSize to match maxQueueSize';
/** What the SDK's global error handler writes (diag.error) for the refused export: JSON with the error's message. */
const refusedExport = () =>
  new RegExp(`^\\{"stack":"Error: connect ECONNREFUSED 127\\.0\\.0\\.1:${refusing}\\\\n.*"message":"connect ECONNREFUSED 127\\.0\\.0\\.1:${refusing}"`);
/** A debug line of the OTLP exporter, before each send. */
const ITEMS_TO_BE_SENT = /^OTLPExportDelegate items to be sent/;

describe('OTEL_LOG_LEVEL', () => {
  it('debug: the SDK diag lines go to the console, those said while request-budget builds its pipeline included', async () => {
    const run = await runScript({ OTEL_LOG_LEVEL: 'debug' });
    expect(run.code).toBe(0);
    const all = [...run.stdout, ...run.stderr];
    // Said by BatchSpanProcessor's constructor, before NodeSDK's: lost until now.
    expect(run.stderr.filter((line) => line === BSP_CORRECTED)).toHaveLength(1);
    // Said after NodeSDK's constructor: the refused export, at error level, and a debug line.
    expect(run.stderr.filter((line) => refusedExport().test(line))).toHaveLength(1);
    expect(all.some((line) => ITEMS_TO_BE_SENT.test(line))).toBe(true);
    // The logger is handed over to NodeSDK's own setting without an "overwritten" warning.
    expect(all.filter((line) => line.includes('Current logger will'))).toEqual([]);
    // request-budget's own line about the export is there too.
    expect(run.stderr.filter((line) => line.startsWith('request-budget: could not export'))).toEqual([
      `request-budget: could not export 2 span(s) to OTLP (http/protobuf) http://127.0.0.1:${refusing}/v1/traces: connect ECONNREFUSED 127.0.0.1:${refusing} — ECONNREFUSED; they are dropped (said at most once a minute)`,
    ]);
  });

  it('error: the refused export, and nothing below error level', async () => {
    const run = await runScript({ OTEL_LOG_LEVEL: 'ERROR' });
    expect(run.code).toBe(0);
    expect(run.stderr.filter((line) => refusedExport().test(line))).toHaveLength(1);
    expect(run.stderr).not.toContain(BSP_CORRECTED);
    expect([...run.stdout, ...run.stderr].filter((line) => ITEMS_TO_BE_SENT.test(line))).toEqual([]);
  });

  it('unset: no diag line at all, only request-budget’s own line about the export', async () => {
    const run = await runScript({});
    expect(run.code).toBe(0);
    expect(run.stdout).toEqual([]);
    expect(run.stderr).toEqual([
      `request-budget: could not export 2 span(s) to OTLP (http/protobuf) http://127.0.0.1:${refusing}/v1/traces: connect ECONNREFUSED 127.0.0.1:${refusing} — ECONNREFUSED; they are dropped (said at most once a minute)`,
    ]);
  });

  it('a bad value is said once, and is read as info, as the SDK reads it', async () => {
    const run = await runScript({ OTEL_LOG_LEVEL: 'loud' });
    expect(run.code).toBe(0);
    expect(run.stderr.filter((line) => line.includes('OTEL_LOG_LEVEL'))).toEqual([
      'request-budget: OTEL_LOG_LEVEL="loud" is not one of none, error, warn, info, debug, verbose, all; using info, as the OpenTelemetry SDK does',
    ]);
    // Info: warnings and errors, no debug line.
    expect(run.stderr).toContain(BSP_CORRECTED);
    expect(run.stderr.filter((line) => refusedExport().test(line))).toHaveLength(1);
    expect([...run.stdout, ...run.stderr].filter((line) => ITEMS_TO_BE_SENT.test(line))).toEqual([]);
  });
});
