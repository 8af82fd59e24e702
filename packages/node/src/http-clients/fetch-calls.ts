/**
 * fetch() — Node's global one and undici's own: its abort signal is in the init object, which the
 * undici span (created deep inside fetch, from a diagnostics channel) never sees. A thin wrapper
 * around fetch puts the signal in the context (call-signal.ts) for the undici hook to read.
 *
 * A `Request` object always carries a signal of its own, derived from the one it was made with in
 * a way that cannot be traced back: a call made with one and no `signal` in the init object has
 * an unknown signal.
 */
import { signalProtection } from './abort-signal-delays';
import { withCallSignal, type CallSignal } from './call-signal';

const WRAPPED = Symbol('request-budget.fetch-wrapper');

type Fetch = ((input: unknown, init?: unknown) => unknown) & { [WRAPPED]?: Fetch };

/** A fetch that runs `original` with its call's signal in the context. */
export function wrapFetch<T>(original: T): T {
  if (typeof original !== 'function' || (original as Fetch)[WRAPPED] !== undefined) return original;
  const target = original as unknown as Fetch;
  const wrapped: Fetch = function fetch(this: unknown, ...args: [unknown, unknown?]) {
    let call: CallSignal | undefined;
    try {
      call = fetchCall(args[0], args[1]);
    } catch {
      call = undefined;
    }
    if (call === undefined) return target.apply(this, args);
    return withCallSignal(call, () => target.apply(this, args));
  };
  wrapped[WRAPPED] = target;
  return wrapped as unknown as T;
}

/** The function a {@link wrapFetch} wrapper wraps, or the argument itself. */
export function unwrapFetch<T>(fetch: T): T {
  return ((fetch as Fetch | undefined)?.[WRAPPED] as T | undefined) ?? fetch;
}

/**
 * Wraps `globalThis.fetch` (Node's built-in undici, or whatever the app installed before start).
 * Returns a function that restores the original.
 */
export function wrapGlobalFetch(): () => void {
  const original = globalThis.fetch;
  const wrapped = wrapFetch(original);
  if (wrapped === original) return () => {};
  globalThis.fetch = wrapped;
  return () => {
    if (globalThis.fetch === wrapped) globalThis.fetch = original;
  };
}

function fetchCall(input: unknown, init: unknown): CallSignal {
  const signal = (init as { signal?: unknown } | null | undefined)?.signal;
  if (signal != null) return { signal: signalProtection(signal) };
  if (isRequestLike(input)) return 'unknown signal';
  return { signal: undefined };
}

function isRequestLike(input: unknown): boolean {
  return typeof input === 'object' && input !== null && 'signal' in input && typeof (input as { url?: unknown }).url === 'string';
}
