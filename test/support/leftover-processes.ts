/**
 * Child processes the test support started and that are still running, so none outlives a failed
 * test: each test file stops its leftovers when it ends, and whatever is left when this process
 * exits is killed (and its temp dir removed).
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { afterAll } from 'vitest';

/** How a tracked process is stopped and cleaned up. */
export interface TrackedProcess {
  /** What it is, e.g. `app` or `Prometheus`, so {@link stopLeftoverProcesses} can pick one kind. */
  kind: string;
  /** Stop it gracefully; `graceMs` overrides its own grace period before SIGKILL. */
  stop(graceMs?: number): Promise<unknown>;
  /** A directory to remove when the process is killed at exit. */
  tempDir?: string;
}

// Kept on globalThis because vitest re-evaluates this module per test file in the same worker,
// and a process started under one evaluation must still be found, and one exit hook is enough.
interface Registry {
  live: Map<ChildProcess, TrackedProcess>;
}
const REGISTRY = Symbol.for('request-budget.test.leftover-processes');
const registry: Registry = ((globalThis as Record<symbol, unknown>)[REGISTRY] as Registry | undefined) ?? createRegistry();

function createRegistry(): Registry {
  const created: Registry = { live: new Map() };
  (globalThis as Record<symbol, unknown>)[REGISTRY] = created;
  process.once('exit', () => {
    for (const [child, { tempDir }] of created.live) {
      child.kill('SIGKILL');
      if (tempDir !== undefined) fs.rmSync(tempDir, { recursive: true, force: true });
    }
  });
  return created;
}

/** Track `child` until {@link untrackProcess}. */
export function trackProcess(child: ChildProcess, tracked: TrackedProcess): void {
  registry.live.set(child, tracked);
}

/** Forget `child` (it has exited or been stopped and cleaned up). */
export function untrackProcess(child: ChildProcess): void {
  registry.live.delete(child);
}

/** Stop every tracked process (of `kind`, if given), with `graceMs` if given, else each one's own. */
export async function stopLeftoverProcesses(kind?: string, graceMs?: number): Promise<void> {
  const leftovers = [...registry.live.values()].filter((tracked) => kind === undefined || tracked.kind === kind);
  await Promise.all(leftovers.map((tracked) => tracked.stop(graceMs)));
}

// vitest ends its workers without an 'exit' event, so the exit hook is not enough: stop whatever
// a test file left running (e.g. a test failed before calling stop()). This module is evaluated
// once per test file, so the hook lands in every file that uses it.
afterAll(() => stopLeftoverProcesses());
