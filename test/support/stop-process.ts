import type { ChildProcess } from 'node:child_process';

/**
 * Stop a child process: send `signal`, SIGKILL it if it is still running after `graceMs`, and
 * resolve once `closed` (the promise of its 'close' event, after its output is drained) settles.
 * A child that already exited is only waited for; one that never started is left alone.
 */
export async function stopProcess(child: ChildProcess, closed: Promise<unknown>, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child.pid === undefined) return;
  let timer: NodeJS.Timeout | undefined;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill(signal);
    timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  }
  try {
    await closed;
  } finally {
    clearTimeout(timer);
  }
}
