/**
 * Runs a service binary (Prometheus, Alertmanager) for end-to-end tests: one private instance per
 * call, in its own temp dir holding a throwaway config and storage, listening on a free
 * 127.0.0.1 port, and started once GET /-/ready answers 200. Its output is kept; stop() ends it
 * (SIGTERM, then SIGKILL) and removes the temp dir, and a test file's leftovers are stopped when
 * the file ends.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { freePort } from './free-port';
import { stopLeftoverProcesses, trackProcess, untrackProcess } from './leftover-processes';
import { stopProcess } from './stop-process';

const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;

/** Where a service's files and address are, for building its command line. */
export interface ServicePaths {
  /** The temp dir (also the working directory); put storage below it. */
  dir: string;
  /** The config file, written from {@link ServiceSpec.config}. */
  configFile: string;
  /** `127.0.0.1:<port>`, for the listen flag. */
  listenAddress: string;
}

/** What to run; see {@link startService}. */
export interface ServiceSpec {
  /** Its name in messages, e.g. `Prometheus`; also the temp dir's prefix (lower case). */
  name: string;
  /** The binary to run. */
  bin: string;
  /** The Debian package that installs it, named when the binary is missing. */
  aptPackage: string;
  /** The config file's name in the temp dir. */
  configFileName: string;
  /** The config, written as JSON (which is valid YAML, so no quoting to get wrong). */
  config: unknown;
  /** The command-line arguments. */
  args(paths: ServicePaths): string[];
}

/** A started service; see {@link startService}. */
export interface ServiceProcess {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  readonly url: string;
  readonly pid: number;
  /** The temp dir holding the config and storage (removed by stop()). */
  readonly dir: string;
  /** Lines the process printed on stdout and stderr; live array. */
  readonly logs: string[];
  /** SIGTERM, SIGKILL after a grace period, then remove the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

/** Stop every instance of the service named `name` still running (for afterEach/afterAll). */
export function stopServices(name: string): Promise<void> {
  return stopLeftoverProcesses(name);
}

/** Start a private instance and resolve once GET /-/ready answers 200. */
export async function startService(spec: ServiceSpec): Promise<ServiceProcess> {
  // The port is free when probed but could be taken before the binary binds it; retry then.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(spec, await freePort());
    } catch (err) {
      if (attempt < 3 && /address already in use/.test((err as Error).message)) continue;
      throw err;
    }
  }
}

function tail(lines: string[], n = 40): string {
  return lines
    .slice(-n)
    .map((l) => `  ${l}`)
    .join('\n');
}

async function startOnce(spec: ServiceSpec, port: number): Promise<ServiceProcess> {
  const { name, bin } = spec;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${name.toLowerCase()}-`));
  const configFile = path.join(dir, spec.configFileName);
  fs.writeFileSync(configFile, JSON.stringify(spec.config, null, 2));

  const url = `http://127.0.0.1:${port}`;
  const args = spec.args({ dir, configFile, listenAddress: `127.0.0.1:${port}` });
  const child = spawn(bin, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });

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
      await stopProcess(child, exited, 'SIGTERM', STOP_GRACE_MS);
      untrackProcess(child);
      fs.rmSync(dir, { recursive: true, force: true });
    })());
  trackProcess(child, { kind: name, stop, tempDir: dir });

  const command = [bin, ...args].join(' ');
  const fail = async (why: string): Promise<never> => {
    await stop();
    throw new Error(`${name} did not become ready: ${why}\ncommand: ${command}\nconfig: ${JSON.stringify(spec.config)}\noutput:\n${tail(logs)}`);
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
      const hint = (outcome.err as NodeJS.ErrnoException).code === 'ENOENT' ? ` (install it: apt-get install ${spec.aptPackage}, or run .ci/run)` : '';
      return fail(`cannot run ${bin}: ${outcome.err.message}${hint}`);
    }
    if (outcome.kind === 'exited') return fail(`process ${exitInfo}`);
    if (outcome.status === 200) break;
    if (Date.now() > deadline) return fail(`GET /-/ready not 200 after ${READY_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  return { url, pid: child.pid!, dir, logs, stop };
}
