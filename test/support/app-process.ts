/**
 * Runs an app script in a child Node process, the way users run it:
 * `node --require @request-budget/node/register app.js`, and waits until it is ready.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { stopLeftoverProcesses, trackProcess, untrackProcess } from './leftover-processes';
import { repoRoot } from './paths';
import { stopProcess } from './stop-process';

/** Options for {@link startApp}. */
export interface StartAppOptions {
  /** The app entry script (absolute, or relative to `cwd`). */
  script: string;
  /** Arguments after the script. */
  args?: string[];
  /** Merged over `process.env`; `undefined` removes a variable. */
  env?: Record<string, string | undefined>;
  /** Preload `registerModule` with `--require` (default true). */
  requireRegister?: boolean;
  /** The module to preload (default `@request-budget/node/register`). */
  registerModule?: string;
  /** Extra Node flags, placed before the script. */
  nodeArgs?: string[];
  /** Working directory; also where `--require` resolves from (default: repo root). */
  cwd?: string;
  /** Matched against stdout lines; capture group 1 becomes `url` (default `/listening on (http:\/\/\S+)/`). */
  readyPattern?: RegExp;
  /** How long to wait for readiness before killing the app (default 15000 ms). */
  timeoutMs?: number;
}

/** Which output stream(s) {@link AppProcess.waitForLine} looks at. */
export type OutputStream = 'stdout' | 'stderr' | 'both';

/** How the child ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A started app; see {@link startApp}. */
export interface AppProcess {
  /** Capture group 1 of the ready line ('' if the pattern has none). */
  url: string;
  /** The full ready-line match. */
  ready: RegExpMatchArray;
  /** Lines printed so far (live arrays). */
  stdoutLines: string[];
  stderrLines: string[];
  /** Resolve with the first line, past or future, that matches `re`; reject on timeout or exit. */
  waitForLine(re: RegExp, timeoutMs?: number, stream?: OutputStream): Promise<RegExpMatchArray>;
  /**
   * Send `signal`, wait for exit, SIGKILL after `graceMs` (default 5000).
   * Resolves with the exit code, or null when the process died from a signal.
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
  /** Settles when the process has exited and its output is fully read. */
  exited: Promise<ExitInfo>;
  child: ChildProcess;
}

/** Stop every app still running in this process (for afterEach/afterAll). */
export function stopAllApps(graceMs = 2000): Promise<void> {
  return stopLeftoverProcesses('app', graceMs);
}

function tail(lines: string[], n = 100): string {
  const shown = lines.slice(-n);
  return (lines.length > n ? `  … ${lines.length - n} earlier line(s)\n` : '') + shown.map((l) => `  ${l}`).join('\n');
}

/** The arguments given to Node: `[--require register] ...nodeArgs script ...args`. */
export function nodeArgv(options: StartAppOptions): string[] {
  const { script, args = [], nodeArgs = [], requireRegister = true, registerModule = '@request-budget/node/register' } = options;
  const preload = requireRegister ? ['--require', registerModule] : [];
  return [...preload, ...nodeArgs, script, ...args];
}

/** Spawn the app under this process's Node binary and resolve once it prints its ready line. */
export async function startApp(options: StartAppOptions): Promise<AppProcess> {
  const { env = {}, cwd = repoRoot, readyPattern = /listening on (http:\/\/\S+)/, timeoutMs = 15000 } = options;

  const argv = nodeArgv(options);
  // process.execPath: the Node running the tests (the repo's pinned Node 24), not the PATH one.
  const child = spawn(process.execPath, argv, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  const stdoutLines: string[] = [];
  const stderrLines: string[] = [];
  const lineListeners = new Set<(line: string, stream: 'stdout' | 'stderr') => void>();
  const exitListeners = new Set<(info: ExitInfo) => void>();

  for (const [stream, lines] of [
    ['stdout', stdoutLines],
    ['stderr', stderrLines],
  ] as const) {
    readline.createInterface({ input: child[stream]! }).on('line', (line) => {
      lines.push(line);
      for (const listener of [...lineListeners]) listener(line, stream);
    });
  }

  let exitInfo: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    // 'close' (not 'exit') fires after stdout/stderr are drained, so no line is lost.
    child.once('close', (code, signal) => {
      untrackProcess(child);
      exitInfo = { code, signal };
      for (const listener of [...exitListeners]) listener(exitInfo);
      resolve(exitInfo);
    });
  });
  const stopChild = async (signal: NodeJS.Signals, graceMs: number): Promise<ExitInfo> => {
    await stopProcess(child, exited, signal, graceMs);
    return exited;
  };
  // Left running (e.g. by a failed test), it is stopped when the test file ends, with a shorter grace period.
  trackProcess(child, { kind: 'app', stop: (graceMs = 2000) => stopChild('SIGTERM', graceMs) });

  const describeExit = (info: ExitInfo) => (info.signal ? `was killed by ${info.signal}` : `exited with code ${info.code}`);

  function waitForLine(re: RegExp, lineTimeoutMs = 5000, stream: OutputStream = 'both'): Promise<RegExpMatchArray> {
    const wanted = (s: 'stdout' | 'stderr') => stream === 'both' || stream === s;
    const past = [...(wanted('stdout') ? stdoutLines : []), ...(wanted('stderr') ? stderrLines : [])];
    for (const line of past) {
      const match = line.match(re);
      if (match) return Promise.resolve(match);
    }
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        lineListeners.delete(onLine);
        exitListeners.delete(onExit);
      };
      const onLine = (line: string, s: 'stdout' | 'stderr') => {
        const match = wanted(s) ? line.match(re) : null;
        if (!match) return;
        cleanup();
        resolve(match);
      };
      const fail = (why: string) => {
        cleanup();
        reject(new Error(`no ${stream} line matched ${re}: ${why}\nstdout:\n${tail(stdoutLines)}\nstderr:\n${tail(stderrLines)}`));
      };
      const onExit = (info: ExitInfo) => fail(`app ${describeExit(info)}`);
      const timer = setTimeout(() => fail(`timed out after ${lineTimeoutMs} ms`), lineTimeoutMs);
      if (exitInfo) return fail(`app ${describeExit(exitInfo)}`);
      lineListeners.add(onLine);
      exitListeners.add(onExit);
    });
  }

  const spawnFailed = new Promise<never>((_, reject) => child.once('error', reject));
  let ready: RegExpMatchArray;
  try {
    ready = await Promise.race([waitForLine(readyPattern, timeoutMs, 'stdout'), spawnFailed]);
  } catch (err) {
    // Never leave a half-started app behind (no pid means it never started).
    if (child.pid !== undefined) await stopChild('SIGKILL', 0);
    const command = [process.execPath, ...argv].join(' ');
    throw new Error(`app (pid ${child.pid}) did not become ready: ${command}\n${(err as Error).message}`, { cause: err });
  }

  return {
    url: ready[1] ?? '',
    ready,
    stdoutLines,
    stderrLines,
    waitForLine,
    stop: async (signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000) => (await stopChild(signal, graceMs)).code,
    exited,
    child,
  };
}
