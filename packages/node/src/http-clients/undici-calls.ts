/**
 * Requests made through undici — Node's global fetch, and the undici package's `request`,
 * `stream`, `pipeline`, `fetch` and dispatchers — judged in instrumentation-undici's
 * `startSpanHook`, from what was recorded on the way in: the call's signal (call-signal.ts), the
 * request's and its client's timeouts (undici-dispatch.ts), or axios's config when axios runs on
 * its fetch adapter.
 */
import { context, type Attributes } from '@opentelemetry/api';
import { signalProtection } from './abort-signal-delays';
import { axiosCallProtections } from './axios-calls';
import { callSignalOf, withCallSignal } from './call-signal';
import { unwrapFetch, wrapFetch } from './fetch-calls';
import { reportHookFailure, reportOnce } from './report-once';
import { judge, judgementAttributes } from './timeout-judgement';
import { currentDispatch, requestProtections, type UndiciRequestLike } from './undici-dispatch';

const API_FUNCTIONS = ['request', 'stream', 'pipeline', 'upgrade', 'connect'] as const;
const ORIGINAL = Symbol('request-budget.undici-api-original');

type ApiFunction = ((this: unknown, ...args: unknown[]) => unknown) & { [ORIGINAL]?: ApiFunction };

/** The hook instrumentation-undici is configured with. */
export class UndiciCallJudge {
  constructor(private readonly ceilingMs: () => number) {}

  /**
   * instrumentation-undici `startSpanHook`. A request made neither through a wrapped call nor
   * through the undici package (a WebSocket handshake of Node's, say) gets no attribute: unknown,
   * never "untimed".
   */
  readonly startSpanHook = (request: UndiciRequestLike): Attributes => {
    try {
      const ctx = context.active();
      const axios = axiosCallProtections(ctx);
      const call = callSignalOf(ctx);
      const frame = currentDispatch(request);
      if (axios === undefined && call === undefined && frame === undefined) return {};
      const protections = requestProtections(request, frame);
      // axios's fetch adapter passes a signal of its own making: axios's config says what it holds.
      if (axios !== undefined) protections.push(...axios);
      else if (call !== undefined && call !== 'unknown signal' && call.signal !== undefined) protections.push(call.signal);
      else if (call === 'unknown signal' && protections.length === 0) {
        reportOnce(
          'fetch:request-object',
          'fetch(request) with a Request object and no `signal` in the init object cannot be judged for a timeout and is not counted as untimed; pass the signal as fetch(request, { signal })',
        );
        return {};
      }
      return judgementAttributes(judge(protections, this.ceilingMs()));
    } catch (error) {
      reportHookFailure('undici startSpanHook', error);
      return {};
    }
  };
}

/**
 * Patches lib/api/index.js of the undici package: `request`, `stream`… run with their `signal`
 * option in the context, whichever dispatcher (the package's, or Node's bundled one installed as
 * the global dispatcher) ends up sending the request.
 */
export function patchUndiciApi<T>(moduleExports: T): T {
  const api = moduleExports as Record<string, ApiFunction | undefined> | undefined;
  for (const name of API_FUNCTIONS) {
    const original = api?.[name];
    if (typeof original !== 'function' || original[ORIGINAL] !== undefined) continue;
    const wrapped: ApiFunction = function (this: unknown, ...args: unknown[]) {
      let signal;
      try {
        signal = signalProtection((args[0] as { signal?: unknown } | null | undefined)?.signal);
      } catch {
        signal = undefined;
      }
      return withCallSignal({ signal }, () => original.apply(this, args));
    };
    Object.defineProperty(wrapped, 'name', { value: original.name });
    wrapped[ORIGINAL] = original;
    api![name] = wrapped;
  }
  if (typeof api?.request !== 'function' || api.request[ORIGINAL] === undefined) {
    reportOnce(
      'undici:api-shape',
      "undici: request() not found where expected in this version; a signal passed to undici's request/stream is seen only on the package's own dispatchers",
    );
  }
  return moduleExports;
}

export function unpatchUndiciApi<T>(moduleExports: T): void {
  const api = moduleExports as Record<string, ApiFunction | undefined> | undefined;
  for (const name of API_FUNCTIONS) {
    const original = api?.[name]?.[ORIGINAL];
    if (original !== undefined) api![name] = original;
  }
}

/** Patches lib/web/fetch/index.js of the undici package, whose `fetch` the package exports. */
export function patchUndiciFetch<T>(moduleExports: T): T {
  const exports = moduleExports as { fetch?: unknown } | undefined;
  if (typeof exports?.fetch !== 'function') {
    reportOnce(
      'undici:fetch-shape',
      "undici: fetch not found where expected in this version; undici's fetch calls are judged by their dispatcher's timeouts only",
    );
    return moduleExports;
  }
  exports.fetch = wrapFetch(exports.fetch);
  return moduleExports;
}

export function unpatchUndiciFetch<T>(moduleExports: T): void {
  const exports = moduleExports as { fetch?: unknown } | undefined;
  if (exports !== undefined && typeof exports.fetch === 'function') exports.fetch = unwrapFetch(exports.fetch);
}
