/**
 * undici's timeouts: what bounds a request it sends is its `headersTimeout` and `bodyTimeout`,
 * set per request or, failing that, on the `Client` that sends it (Pools and Agents pass theirs
 * to their clients). The request object the diagnostics channel carries keeps the per-request
 * values; the client's are found by wrapping `DispatcherBase.prototype.dispatch` of the undici
 * package, which keeps, for the duration of the synchronous call that creates the request, which
 * client was asked and with which options (its `signal` too).
 *
 * Requests sent by the undici bundled in Node — global fetch, and the undici package's top-level
 * `request()`/`fetch()` when the global dispatcher is Node's, which Node installs as soon as
 * anything loads its undici — go through no patched dispatcher: their client runs on undici's
 * defaults, unless the app installed a dispatcher of the package with `setGlobalDispatcher`,
 * which is then seen.
 *
 * undici's default timeouts (300 s for headers and for the body) are no choice of the caller's
 * and count as none; so does an explicit 300000. Both timeouts must be set for the call to be
 * bounded — headers alone leave a stalled body to wait out the default — and then the longer one
 * is the call's timeout.
 */
import { context, type Context } from '@opentelemetry/api';
import { signalProtection } from './abort-signal-delays';
import { reportOnce } from './report-once';
import type { Protection } from './timeout-judgement';

/** undici's default headersTimeout and bodyTimeout. */
export const UNDICI_DEFAULT_TIMEOUT_MS = 300_000;

const ORIGINAL = Symbol('request-budget.undici-original');

/** The fields of undici's request object (lib/core/request.js) read here. */
export interface UndiciRequestLike {
  readonly method?: unknown;
  readonly headersTimeout?: unknown;
  readonly bodyTimeout?: unknown;
}
interface DispatchOptions {
  method?: unknown;
  signal?: unknown;
}
interface Frame {
  readonly dispatcher: object;
  readonly opts: DispatchOptions;
}
type Dispatch = ((this: object, ...args: [opts: DispatchOptions, handler: unknown]) => unknown) & { [ORIGINAL]?: Dispatch };
interface DispatcherClass {
  prototype: { dispatch?: Dispatch };
}
interface TimeoutSymbols {
  readonly headers: symbol | undefined;
  readonly body: symbol | undefined;
}

// Dispatch calls nest (Agent → Pool → Client); the innermost is the Client creating the request.
const frames: Frame[] = [];
// The context each handler was first dispatched in. undici's redirect and retry handlers dispatch
// themselves again from socket callbacks, whose context is that of whichever request opened the
// connection: the follow-up request (its span, its cost) belongs to the first one's.
const dispatchContexts = new WeakMap<object, Context>();
// Where each client class keeps its timeouts: symbols private to undici, found by name.
const timeoutSymbols = new WeakMap<object, TimeoutSymbols>();

/** The dispatch call creating `request` right now, if it goes through the undici package. */
export function currentDispatch(request: UndiciRequestLike): Frame | undefined {
  const frame = frames[frames.length - 1];
  return frame !== undefined && frame.opts.method === request.method ? frame : undefined;
}

/** The signal (when the dispatch options show it) and the timeouts that bound the request. */
export function requestProtections(request: UndiciRequestLike, frame: Frame | undefined): Protection[] {
  const protections: Protection[] = [];
  const signal = signalProtection(frame?.opts.signal);
  if (signal !== undefined) protections.push(signal);
  const client = frame === undefined ? undefined : clientTimeouts(frame.dispatcher);
  const headers = request.headersTimeout ?? client?.headers ?? UNDICI_DEFAULT_TIMEOUT_MS;
  const body = request.bodyTimeout ?? client?.body ?? UNDICI_DEFAULT_TIMEOUT_MS;
  if (isChosenTimeout(headers) && isChosenTimeout(body)) protections.push({ source: 'undici timeouts', ms: Math.max(headers, body) });
  return protections;
}

/** Patches lib/dispatcher/dispatcher-base.js (its export is the class). */
export function patchDispatcherBase<T>(DispatcherBase: T): T {
  const proto = (DispatcherBase as DispatcherClass | undefined)?.prototype;
  const original = proto?.dispatch;
  if (proto === undefined || typeof original !== 'function') {
    reportOnce(
      'undici:shape',
      "undici: DispatcherBase.prototype.dispatch not found in this version; undici requests are judged without their dispatcher's timeouts",
    );
    return DispatcherBase;
  }
  if (original[ORIGINAL] !== undefined) return DispatcherBase;
  const wrapped: Dispatch = function dispatch(this: object, ...args) {
    const [opts, handler] = args;
    const run = () => {
      frames.push({ dispatcher: this, opts: typeof opts === 'object' && opts !== null ? opts : {} });
      try {
        return original.apply(this, args);
      } finally {
        frames.pop();
      }
    };
    const first = firstContextOf(handler);
    return first === undefined || first === context.active() ? run() : context.with(first, run);
  };
  wrapped[ORIGINAL] = original;
  proto.dispatch = wrapped;
  return DispatcherBase;
}

export function unpatchDispatcherBase<T>(DispatcherBase: T): void {
  const proto = (DispatcherBase as DispatcherClass | undefined)?.prototype;
  const current = proto?.dispatch;
  if (proto !== undefined && current?.[ORIGINAL] !== undefined) proto.dispatch = current[ORIGINAL];
}

/** The context `handler` was first dispatched in, when this is a dispatch again; else undefined. */
function firstContextOf(handler: unknown): Context | undefined {
  if (typeof handler !== 'object' || handler === null) return undefined;
  const first = dispatchContexts.get(handler);
  if (first === undefined) dispatchContexts.set(handler, context.active());
  return first;
}

function clientTimeouts(dispatcher: object): { headers: unknown; body: unknown } {
  const symbols = timeoutSymbolsOf(dispatcher);
  const values = dispatcher as Record<symbol, unknown>;
  return { headers: symbols.headers && values[symbols.headers], body: symbols.body && values[symbols.body] };
}

function timeoutSymbolsOf(dispatcher: object): TimeoutSymbols {
  const key = Object.getPrototypeOf(dispatcher) ?? dispatcher;
  let found = timeoutSymbols.get(key);
  if (found === undefined) {
    const own = Object.getOwnPropertySymbols(dispatcher);
    found = {
      headers: own.find((symbol) => symbol.description === 'headers timeout'),
      body: own.find((symbol) => symbol.description === 'body timeout'),
    };
    if (found.headers === undefined || found.body === undefined) {
      reportOnce(
        'undici:timeouts',
        `undici: cannot read the timeouts of a ${dispatcher.constructor?.name ?? 'dispatcher'}; its requests are judged by their own headersTimeout/bodyTimeout/signal only`,
      );
    }
    timeoutSymbols.set(key, found);
  }
  return found;
}

function isChosenTimeout(ms: unknown): ms is number {
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 && ms !== UNDICI_DEFAULT_TIMEOUT_MS;
}
