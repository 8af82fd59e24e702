/**
 * got: its `timeout.request` is a timer of got's own that destroys the request, and its `signal`
 * is listened to by got, so the node:http request shows neither. For every request it sends
 * (retries and redirects included) got builds the node:http options with
 * `Options.prototype.createNativeRequestOptions()` — exported, unlike its Request class — and
 * passes them to `http.request` right away. That method is wrapped to tag the options it returns
 * with what bounds the request: `timeout.request` (the whole call), `timeout.socket`
 * (inactivity), `signal`. The tag is an own enumerable symbol, so it survives the copies got and
 * instrumentation-http make on the way to the span hook. got has no default timeout.
 */
import { signalProtection } from './abort-signal-delays';
import { reportHookFailure, reportOnce } from './report-once';
import { timerProtection, type Protection } from './timeout-judgement';

const ORIGINAL = Symbol('request-budget.got-original');
const GOT_PROTECTIONS = Symbol('request-budget.got-protections');

type CreateNativeRequestOptions = ((this: GotOptionsLike, ...args: unknown[]) => unknown) & { [ORIGINAL]?: CreateNativeRequestOptions };
interface GotOptionsLike {
  timeout?: Record<string, unknown>;
  signal?: unknown;
}
interface GotOptionsClass {
  prototype: { createNativeRequestOptions?: CreateNativeRequestOptions };
}

/** What bounds a node:http request that got made (from its request options), or undefined. */
export function gotRequestProtections(requestOptions: object): readonly Protection[] | undefined {
  return (requestOptions as { [GOT_PROTECTIONS]?: readonly Protection[] })[GOT_PROTECTIONS];
}

/** Patches got's module namespace (got is ESM only; `require('got')` returns it too). */
export function patchGot<T>(moduleExports: T): T {
  const Options = optionsClassOf(moduleExports);
  const original = Options?.prototype.createNativeRequestOptions;
  if (Options === undefined || typeof original !== 'function') {
    reportOnce(
      'got:shape',
      'got: Options.prototype.createNativeRequestOptions not found in this version; got calls bounded by `timeout.request` or `signal` count as untimed',
    );
    return moduleExports;
  }
  if (original[ORIGINAL] !== undefined) return moduleExports;
  const wrapped: CreateNativeRequestOptions = function createNativeRequestOptions(this: GotOptionsLike, ...args: unknown[]) {
    const native = original.apply(this, args);
    try {
      if (typeof native === 'object' && native !== null) {
        Object.defineProperty(native, GOT_PROTECTIONS, { value: protectionsOf(this), enumerable: true, configurable: true, writable: true });
      }
    } catch (error) {
      reportHookFailure('got', error);
    }
    return native;
  };
  wrapped[ORIGINAL] = original;
  Options.prototype.createNativeRequestOptions = wrapped;
  return moduleExports;
}

export function unpatchGot<T>(moduleExports: T): void {
  const Options = optionsClassOf(moduleExports);
  const current = Options?.prototype.createNativeRequestOptions;
  if (Options !== undefined && current?.[ORIGINAL] !== undefined) Options.prototype.createNativeRequestOptions = current[ORIGINAL];
}

function protectionsOf(options: GotOptionsLike): Protection[] {
  const protections: Protection[] = [];
  const timeout = options.timeout ?? {};
  for (const phase of ['request', 'socket'] as const) {
    const protection = timerProtection(`got timeout.${phase}`, timeout[phase]);
    if (protection !== undefined) protections.push(protection);
  }
  const signal = signalProtection(options.signal, 'got signal');
  if (signal !== undefined) protections.push(signal);
  return protections;
}

function optionsClassOf(moduleExports: unknown): GotOptionsClass | undefined {
  const Options: unknown = (moduleExports as { Options?: unknown } | undefined)?.Options;
  return typeof Options === 'function' && typeof Options.prototype === 'object' ? Options : undefined;
}
