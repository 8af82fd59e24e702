/**
 * Runs a test runner (vitest, node --test, jest) as a child process, the way CI runs a project's
 * suite, and collects its exit status and output. The environment is the test process's own,
 * without what the outer vitest and CI put there (VITEST_*, REQUEST_BUDGET_*, OTEL_*,
 * GITHUB_STEP_SUMMARY), plus what the caller adds.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { trackProcess, untrackProcess } from './leftover-processes';
import { repoRoot } from './paths';

export interface TestRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout then stderr. */
  readonly output: string;
}

export interface TestRunOptions {
  readonly cwd: string;
  readonly env?: Record<string, string>;
  /** @default 90000 */
  readonly timeoutMs?: number;
}

const DROPPED = /^(VITEST|REQUEST_BUDGET_|OTEL_|JEST_)|^(GITHUB_STEP_SUMMARY|NODE_OPTIONS|CI)$/;

/** The environment a child test run gets. */
export function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !DROPPED.test(key)) env[key] = value;
  // The repo's Node first on PATH: runners that start `node` by name get Node 24.
  env.PATH = `${path.join(repoRoot, 'node_modules', '.bin')}${path.delimiter}${env.PATH ?? ''}`;
  return { ...env, ...extra };
}

/** Runs `args` under this process's Node; resolves when it has exited and its output is read. */
export function runNode(args: readonly string[], options: TestRunOptions): Promise<TestRun> {
  const child = spawn(process.execPath, args, { cwd: options.cwd, env: childEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // The runner starts workers of its own: stop the whole process group.
  const killGroup = () => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  trackProcess(child, { kind: 'test-run', stop: async () => (killGroup(), closed) });
  const timer = setTimeout(killGroup, options.timeoutMs ?? 90_000);
  return closed.then((code) => {
    clearTimeout(timer);
    untrackProcess(child);
    return { code, stdout, stderr, output: `${stdout}\n${stderr}` };
  });
}

/** Strips terminal colours, so output can be compared as text. */
export function plain(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*m/g, '');
}

/** The gate's Markdown report in a run's output: from its heading to the end of the report. */
export function gateReport(output: string): string {
  const text = plain(output);
  const start = text.indexOf('## request-budget: per-route baseline');
  if (start < 0) throw new Error(`no gate report in the output:\n${text}`);
  const rest = text.slice(start);
  const end = rest.search(/\n(error during close|BaselineGateFailure|\s*$)/);
  return (end < 0 ? rest : rest.slice(0, end)).trimEnd();
}
