/**
 * The pure parts of judging outgoing calls: the rule (timed when bounded within the ceiling),
 * the delays remembered for AbortSignal.timeout/any signals, undici's timeouts as read off a
 * request, and the ceiling's configuration. The clients themselves are tested end to end in
 * test/stacks/http-clients.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config';
import { signalDelayMs, signalProtection, trackAbortSignalDelays } from '../src/http-clients/abort-signal-delays';
import { judge, judgementAttributes, timerProtection } from '../src/http-clients/timeout-judgement';
import { requestProtections } from '../src/http-clients/undici-dispatch';

describe('judge', () => {
  const ceiling = 30_000;
  it.each([
    ['nothing bounds the call', [], { timed: false, timeoutMs: undefined }],
    ['a 2 s timeout', [{ source: 't', ms: 2000 }], { timed: true, timeoutMs: 2000 }],
    ['exactly the ceiling', [{ source: 't', ms: 30_000 }], { timed: true, timeoutMs: 30_000 }],
    ['a 60 s timeout, above the ceiling', [{ source: 't', ms: 60_000 }], { timed: false, timeoutMs: 60_000 }],
    ['a signal of unknown delay', [{ source: 's', ms: undefined }], { timed: true, timeoutMs: undefined }],
    [
      'the shortest of several',
      [
        { source: 't', ms: 60_000 },
        { source: 's', ms: 5000 },
      ],
      { timed: true, timeoutMs: 5000 },
    ],
  ] as const)('%s', (_name, protections, expected) => {
    expect(judge(protections, ceiling)).toEqual(expected);
  });

  it('writes timed as a boolean and the timeout as a whole number of ms, only when known', () => {
    expect(judgementAttributes({ timed: false, timeoutMs: undefined })).toEqual({ 'request_budget.http_client.timed': false });
    expect(judgementAttributes({ timed: true, timeoutMs: 1500.4 })).toEqual({
      'request_budget.http_client.timed': true,
      'request_budget.http_client.timeout_ms': 1500,
    });
  });
});

describe('timerProtection', () => {
  it.each([
    [2000, 2000],
    ['2000', 2000],
    [0, undefined],
    [-5, undefined],
    [Number.NaN, undefined],
    [Number.POSITIVE_INFINITY, undefined],
    [undefined, undefined],
    ['soon', undefined],
  ])('%s ms sets a timer of %s ms', (ms, expected) => {
    expect(timerProtection('t', ms)?.ms).toBe(expected);
  });
});

describe('AbortSignal delays', () => {
  let restore: () => void;
  const original = { timeout: AbortSignal.timeout, any: AbortSignal.any };
  beforeAll(() => {
    restore = trackAbortSignalDelays();
  });
  afterAll(() => restore());

  it('knows the delay of AbortSignal.timeout(ms), and none for a controller', () => {
    expect(signalDelayMs(AbortSignal.timeout(1234))).toBe(1234);
    expect(signalProtection(new AbortController().signal)).toEqual({ source: 'signal', ms: undefined });
    expect(signalProtection(undefined)).toBeUndefined();
  });

  it('gives AbortSignal.any the shortest known delay of its signals, from an array or any iterable', () => {
    const controller = new AbortController();
    expect(signalDelayMs(AbortSignal.any([controller.signal, AbortSignal.timeout(900), AbortSignal.timeout(500)]))).toBe(500);
    function* signals() {
      yield controller.signal;
      yield AbortSignal.timeout(700);
    }
    // Typed as an array, specified as any iterable (a WebIDL sequence).
    const combined = AbortSignal.any(signals() as unknown as AbortSignal[]);
    expect(signalDelayMs(combined)).toBe(700);
    expect(signalDelayMs(AbortSignal.any([controller.signal]))).toBeUndefined();
    controller.abort();
    expect(combined.aborted).toBe(true);
  });

  it('leaves the signals working and restores the originals', () => {
    const signal = AbortSignal.timeout(1);
    expect(signal).toBeInstanceOf(AbortSignal);
    expect(() => AbortSignal.timeout(-1)).toThrow();
    expect(trackAbortSignalDelays()).toBe(restore); // installed once
    restore();
    expect(AbortSignal.timeout).toBe(original.timeout);
    expect(AbortSignal.any).toBe(original.any);
    restore = trackAbortSignalDelays();
  });
});

describe("undici's timeouts, read off the request (no dispatcher seen: Node's bundled undici)", () => {
  it.each([
    ['both set', { headersTimeout: 2000, bodyTimeout: 3000 }, [{ source: 'undici timeouts', ms: 3000 }]],
    ['headers only: the body waits out the 300 s default', { headersTimeout: 2000 }, []],
    ["undici's defaults", {}, []],
    ['an explicit 300000 is the default', { headersTimeout: 300_000, bodyTimeout: 2000 }, []],
    ['0 disables a timeout', { headersTimeout: 0, bodyTimeout: 2000 }, []],
  ])('%s', (_name, request, expected) => {
    expect(requestProtections({ method: 'GET', ...request }, undefined)).toEqual(expected);
  });
});

describe('the ceiling (maxClientTimeoutMs)', () => {
  function resolve(env: Record<string, string>, options = {}) {
    const problems: string[] = [];
    return { config: resolveConfig(options, env, (message) => problems.push(message)), problems };
  }

  it('is 30 s by default, REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS otherwise, the option first', () => {
    expect(resolve({}).config.maxClientTimeoutMs).toBe(30_000);
    expect(resolve({ REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS: '1000' }).config.maxClientTimeoutMs).toBe(1000);
    expect(resolve({ REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS: '1000' }, { maxClientTimeoutMs: 5000 }).config.maxClientTimeoutMs).toBe(5000);
  });

  it('reports a bad value and keeps the default', () => {
    const { config, problems } = resolve({ REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS: '0' });
    expect(config.maxClientTimeoutMs).toBe(30_000);
    expect(problems).toEqual(['REQUEST_BUDGET_MAX_CLIENT_TIMEOUT_MS="0" is not a number from 1 to 2147483647; ignoring it']);
  });
});
