/**
 * Tells, for each outgoing HTTP call, whether it was made with a timeout (or an abort signal),
 * and records it as `request_budget.http_client.timed` on the call's span. The cost tally counts
 * calls where it is `false` as untimed; calls it cannot judge get no attribute and never count.
 *
 * - node:http / node:https: a `signal` in the request options, or a 'timeout' listener on the
 *   request once the calling code has set it up (`req.setTimeout(ms, handler)`, or the `timeout`
 *   option plus `req.on('timeout', …)`). A `timeout` option, `req.setTimeout(ms)` or an agent
 *   timeout with no listener only emit an event: the request goes on, so it counts as untimed.
 *   Libraries that enforce timeouts with timers of their own and no signal (got, node-fetch v2)
 *   are judged untimed too: a known false positive, listed in the README.
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

/** instrumentation-http `startOutgoingSpanHook`: a signal in the options makes the call timed. */
export function outgoingRequestTimedAttributes(options: RequestOptions): Attributes {
  return { [HTTP_CLIENT_TIMED]: options.signal != null };
}

/**
 * instrumentation-http `requestHook`: once the code that created an outgoing request has run
 * on (a microtask later, long before any response), a 'timeout' listener means the caller
 * handles timeouts.
 */
export function judgeTimeoutListener(span: Span, request: ClientRequest | IncomingMessage): void {
  if (!isClientRequest(request)) return;
  queueMicrotask(() => {
    try {
      if (request.listenerCount('timeout') > 0) span.setAttribute(HTTP_CLIENT_TIMED, true);
    } catch {
      // Judging a timeout is never worth an error in the app.
    }
  });
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
