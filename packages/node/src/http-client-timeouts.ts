/**
 * Tells, for each outgoing HTTP call, whether it was made with a timeout that protects the
 * caller, and records it on the call's span as `request_budget.http_client.timed` (plus
 * `request_budget.http_client.timeout_ms` when the delay is known). The cost tally counts calls
 * where it is `false` as untimed; calls it cannot judge get no attribute and never count.
 *
 * A call is timed when something will abort it — an abort signal, or a timer the client or the
 * caller acts on — no later than `maxClientTimeoutMs` (default 30 s). Per client:
 *
 * - node:http / node:https: a `signal` option, or a 'timeout' handler with its timer
 *   (`req.setTimeout(ms, handler)`, or the `timeout` option or the agent's, plus
 *   `req.on('timeout', …)`). A timer with no handler only emits an event: untimed.
 * - axios (node http adapter): its config's `timeout`, `signal` or `cancelToken`.
 * - got: its `timeout.request`, `timeout.socket` or `signal` (got has no default timeout).
 * - fetch (global, and undici's): a `signal` in the init object, or timeouts set on the dispatcher.
 * - undici `request`/`stream`/dispatchers: a `signal`, or both `headersTimeout` and `bodyTimeout`
 *   set (per request or on the dispatcher); undici's 300 s defaults count as none.
 * - A signal made by AbortSignal.timeout(ms) (or AbortSignal.any of such) has a known delay; any
 *   other signal's delay is unknown and the call counts as timed.
 *
 * Every request sent on the wire is one call: redirects followed and retries count each.
 *
 * The pieces live in ./http-clients/; this module is what the SDK wires in.
 */
export {
  DEFAULT_MAX_CLIENT_TIMEOUT_MS,
  HttpClientTimeoutInstrumentation,
  type HttpClientTimeoutConfig,
} from './http-clients/http-client-timeout-instrumentation';
export { wrapGlobalFetch } from './http-clients/fetch-calls';
