/**
 * Tells, for each outgoing HTTP call, whether it was made with a timeout (or an abort signal),
 * and records it as `request_budget.http_client.timed` on the call's span. The cost tally counts
 * calls where it is `false` as untimed; calls it cannot judge get no attribute and never count.
 *
 * - node:http / node:https: `timeout` or `signal` in the request options, or `req.setTimeout()`
 *   called later. An agent's socket timeout does not count: it emits 'timeout' without ending
 *   the request.
 * - fetch(): a `signal` in the init object (e.g. `AbortSignal.timeout(ms)`). The undici span is
 *   created deep inside fetch, so a thin wrapper around `globalThis.fetch` passes the answer down
 *   in the OpenTelemetry context. A `Request` object always has a signal, so calls made with one
 *   are left unjudged.
 */
import { context, createContextKey, type Attributes, type Span } from '@opentelemetry/api';
import type { ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import { HTTP_CLIENT_TIMED } from '@request-budget/core';

const FETCH_TIMED = createContextKey('request-budget fetch timed');
const WRAPPED = Symbol('request-budget.fetch-wrapper');

/** instrumentation-http `startOutgoingSpanHook`: judges the request options. */
export function outgoingRequestTimedAttributes(options: RequestOptions): Attributes {
  const timed = (typeof options.timeout === 'number' && options.timeout > 0) || options.signal != null;
  return { [HTTP_CLIENT_TIMED]: timed };
}

/**
 * instrumentation-http `requestHook`: for outgoing requests, marks the span timed when the
 * caller sets a timeout after creating the request.
 */
export function watchSetTimeout(span: Span, request: ClientRequest | IncomingMessage): void {
  if (!isClientRequest(request)) return;
  const setTimeout = request.setTimeout;
  request.setTimeout = function setTimeoutWatched(this: ClientRequest, ...args: Parameters<ClientRequest['setTimeout']>) {
    if (typeof args[0] === 'number' && args[0] > 0) span.setAttribute(HTTP_CLIENT_TIMED, true);
    return setTimeout.apply(this, args);
  } as ClientRequest['setTimeout'];
}

/** instrumentation-undici `startSpanHook`: the judgement the fetch wrapper left in the context. */
export function fetchTimedAttributes(): Attributes {
  const timed = context.active().getValue(FETCH_TIMED);
  return typeof timed === 'boolean' ? { [HTTP_CLIENT_TIMED]: timed } : {};
}

/**
 * Wraps `globalThis.fetch` so that the undici span can tell whether the call had a signal.
 * Returns a function that restores the original.
 */
export function wrapGlobalFetch(): () => void {
  const original = globalThis.fetch;
  if (typeof original !== 'function' || (original as { [WRAPPED]?: true })[WRAPPED]) return () => {};
  const wrapped = function fetch(this: unknown, input: Parameters<typeof original>[0], init?: RequestInit) {
    let timed: boolean | undefined;
    try {
      timed = fetchCallTimed(input, init);
    } catch {
      timed = undefined;
    }
    if (timed === undefined) return original.call(this, input, init);
    return context.with(context.active().setValue(FETCH_TIMED, timed), () => original.call(this, input, init));
  } as typeof original & { [WRAPPED]?: true };
  wrapped[WRAPPED] = true;
  globalThis.fetch = wrapped;
  return () => {
    if (globalThis.fetch === wrapped) globalThis.fetch = original;
  };
}

function fetchCallTimed(input: unknown, init: RequestInit | undefined): boolean | undefined {
  if (init?.signal != null) return true;
  if (typeof Request === 'function' && input instanceof Request) return undefined;
  return false;
}

function isClientRequest(request: ClientRequest | IncomingMessage): request is ClientRequest {
  return typeof (request as ClientRequest).setTimeout === 'function' && typeof (request as ClientRequest).getHeader === 'function';
}
