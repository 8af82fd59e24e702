import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeArgv, startApp, stopAllApps } from '../support/app-process';
import { get } from '../support/http';

const fixtures = path.join(__dirname, 'fixtures');
const tinyApp = path.join(fixtures, 'tiny-app.mjs');
const preload = path.join(fixtures, 'preload.cjs');

function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

afterEach(() => stopAllApps());

describe('nodeArgv', () => {
  it('preloads @request-budget/node/register before the script by default', () => {
    expect(nodeArgv({ script: 'app.js', args: ['--port', '0'] })).toEqual(['--require', '@request-budget/node/register', 'app.js', '--port', '0']);
  });

  it('leaves the preload out when requireRegister is false and keeps node flags before the script', () => {
    expect(nodeArgv({ script: 'app.js', requireRegister: false, nodeArgs: ['--expose-gc'] })).toEqual(['--expose-gc', 'app.js']);
  });
});

describe('startApp', () => {
  it('resolves with the ready URL once the app listens, and captures both streams', async () => {
    const app = await startApp({ script: tinyApp, requireRegister: false });
    expect(app.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await get(`${app.url}/hello`)).toMatchObject({ status: 200, body: 'hello' });
    await app.waitForLine(/stderr is captured/, 2000, 'stderr');
    expect(app.stderrLines).toContain('stderr is captured too');

    // A line printed after startup is seen by waitForLine.
    const logged = app.waitForLine(/request logged/);
    await get(`${app.url}/log`);
    await expect(logged).resolves.toBeTruthy();

    expect(await app.stop()).toBe(0);
    expect(app.stdoutLines).toContain('shutting down');
    expect(isAlive(app.child.pid)).toBe(false);
  });

  it('runs the app on the Node that runs the tests, with env merged and the preload before the script', async () => {
    process.env.TINY_APP_REMOVED = 'inherited';
    try {
      const app = await startApp({
        script: tinyApp,
        args: ['extra-arg'],
        registerModule: preload,
        env: { TINY_APP_VALUE: 'from-test', TINY_APP_REMOVED: undefined },
      });
      const info = JSON.parse((await get(`${app.url}/info`)).body);
      expect(info).toMatchObject({
        execArgv: ['--require', preload],
        argv: ['extra-arg'],
        value: 'from-test',
        removed: null,
        preloaded: true,
        version: process.version,
      });
      expect(app.stdoutLines[0]).toBe('preload ran');
    } finally {
      delete process.env.TINY_APP_REMOVED;
    }
  });

  it('rejects with the stderr when the app exits before it is ready', async () => {
    const started = startApp({ script: tinyApp, requireRegister: false, env: { TINY_APP_MODE: 'crash' } });
    await expect(started).rejects.toThrow(/exited with code 3[\s\S]*boom: bad config/);
  });

  it('rejects with the preload error when the register module cannot be loaded', async () => {
    const started = startApp({ script: tinyApp, registerModule: './no-such-register.cjs' });
    await expect(started).rejects.toThrow(/Cannot find module '\.\/no-such-register\.cjs'/);
  });

  it('kills the app and rejects when it never becomes ready', async () => {
    let pid: number | undefined;
    const started = startApp({
      script: tinyApp,
      requireRegister: false,
      env: { TINY_APP_MODE: 'silent' },
      timeoutMs: 500,
    }).catch((err: Error & { cause?: unknown }) => {
      pid = Number(/pid (\d+)/.exec(err.message)?.[1]);
      throw err;
    });
    await expect(started).rejects.toThrow(/timed out after 500 ms/);
    expect(pid).toBeGreaterThan(0);
    expect(isAlive(pid)).toBe(false);
  });

  it('escalates to SIGKILL when the app ignores the stop signal', async () => {
    const app = await startApp({ script: tinyApp, requireRegister: false, env: { TINY_APP_IGNORE_SIGTERM: '1' } });
    const began = Date.now();
    expect(await app.stop('SIGTERM', 300)).toBeNull();
    expect(app.child.signalCode).toBe('SIGKILL');
    expect(Date.now() - began).toBeGreaterThanOrEqual(250);
    expect(app.stdoutLines).toContain('ignoring SIGTERM');
  });

  it('rejects waitForLine on timeout and on exit, listing the output', async () => {
    const app = await startApp({ script: tinyApp, requireRegister: false });
    await expect(app.waitForLine(/never printed/, 100)).rejects.toThrow(/timed out after 100 ms[\s\S]*listening on/);
    const pending = app.waitForLine(/never printed/, 5000);
    await app.stop();
    await expect(pending).rejects.toThrow(/app exited with code 0/);
  });

  it('stopAllApps stops every app still running', async () => {
    const a = await startApp({ script: tinyApp, requireRegister: false });
    const b = await startApp({ script: tinyApp, requireRegister: false });
    await stopAllApps();
    expect([isAlive(a.child.pid), isAlive(b.child.pid)]).toEqual([false, false]);
  });
});
