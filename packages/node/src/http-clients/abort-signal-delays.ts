/**
 * Remembers the delay of every `AbortSignal.timeout(ms)` signal, and of `AbortSignal.any([...])`
 * signals made from them (the shortest), so a call's abort signal can be judged against the
 * ceiling. An AbortSignal has no public delay; wrapping the two factories is the only way to know
 * it. Signals made otherwise (an AbortController aborted by a timer of the caller's) have no
 * known delay.
 */
import type { Protection } from './timeout-judgement';

const delays = new WeakMap<object, number>();
let restore: (() => void) | undefined;

/** The delay the signal aborts after, when it came from AbortSignal.timeout (or any of them). */
export function signalDelayMs(signal: object): number | undefined {
  return delays.get(signal);
}

/** The protection a call's abort signal gives, or undefined when there is none. */
export function signalProtection(signal: unknown, source = 'signal'): Protection | undefined {
  if (signal === null || typeof signal !== 'object') return undefined;
  return { source, ms: delays.get(signal) };
}

/** Wraps AbortSignal.timeout and AbortSignal.any (once). Returns a function that restores them. */
export function trackAbortSignalDelays(): () => void {
  if (restore !== undefined) return restore;
  const Signal = globalThis.AbortSignal as (typeof AbortSignal & { any?: (signals: Iterable<AbortSignal>) => AbortSignal }) | undefined;
  if (typeof Signal?.timeout !== 'function') return () => {};
  const undo: (() => void)[] = [];

  const originalTimeout = Signal.timeout;
  undo.push(
    replaceStatic(Signal, 'timeout', function timeout(this: unknown, ms: number) {
      const signal = originalTimeout.call(this, ms);
      try {
        delays.set(signal, Number(ms));
      } catch {
        // Remembering a delay is never worth an error in the app.
      }
      return signal;
    }),
  );

  const originalAny = Signal.any;
  if (typeof originalAny === 'function') {
    undo.push(
      replaceStatic(Signal, 'any', function any(this: unknown, signals: Iterable<AbortSignal>) {
        // Read an iterable once only: a generator cannot be replayed for the original.
        const list = Array.isArray(signals) ? signals : isIterable(signals) ? Array.from(signals) : undefined;
        const combined = originalAny.call(this, list ?? signals);
        try {
          let shortest: number | undefined;
          for (const source of list ?? []) {
            const delay = typeof source === 'object' && source !== null ? delays.get(source) : undefined;
            if (delay !== undefined && (shortest === undefined || delay < shortest)) shortest = delay;
          }
          if (shortest !== undefined) delays.set(combined, shortest);
        } catch {
          // as above
        }
        return combined;
      }),
    );
  }

  restore = () => {
    for (const step of undo.reverse()) step();
    restore = undefined;
  };
  return restore;
}

/** Replaces a static method keeping its property attributes; returns the undo. */
function replaceStatic(target: object, name: string, replacement: (...args: never[]) => unknown): () => void {
  const descriptor = Object.getOwnPropertyDescriptor(target, name);
  if (descriptor === undefined || typeof descriptor.value !== 'function') return () => {};
  Object.defineProperty(replacement, 'name', { value: descriptor.value.name });
  Object.defineProperty(replacement, 'length', { value: descriptor.value.length });
  Object.defineProperty(target, name, { ...descriptor, value: replacement });
  return () => {
    if (Object.getOwnPropertyDescriptor(target, name)?.value === replacement) Object.defineProperty(target, name, descriptor);
  };
}

function isIterable(value: unknown): value is Iterable<AbortSignal> {
  return value !== null && typeof value === 'object' && typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function';
}
