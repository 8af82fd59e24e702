/**
 * node:http / node:https requests (and the clients built on them: axios, got, follow-redirects),
 * judged through instrumentation-http's hooks. What bounds a request:
 *
 * - a `signal` in the request options;
 * - a 'timeout' handler of the caller's plus a timer that emits 'timeout': `req.setTimeout(ms,
 *   handler)`, or the `timeout` option (or the agent's) with `req.on('timeout', …)`. A timer with
 *   no handler only emits an event and the request goes on: untimed;
 * - for axios and got, their own config (see axios-calls.ts, got-requests.ts), which the request
 *   alone does not show.
 *
 * follow-redirects (axios's default transport) adds a 'timeout' listener to every request it
 * makes, to forward the event to its wrapper: that listener is its own, not a handler, so the
 * caller's handlers are looked for on the wrapper instead.
 */
import { context, type Attributes, type Span } from '@opentelemetry/api';
import type { ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import { signalProtection } from './abort-signal-delays';
import { axiosCallProtections } from './axios-calls';
import { gotRequestProtections } from './got-requests';
import { reportHookFailure, reportOnce } from './report-once';
import { judge, judgementAttributes, recordJudgement, timerProtection, type Protection } from './timeout-judgement';

const ORIGINAL = Symbol('request-budget.set-timeout-original');
/** The delay of each request's last `setTimeout(ms)` call: the request does not keep it. */
const setTimeoutDelays = new WeakMap<object, number>();

type SetTimeout = ((this: ClientRequest, ...args: [msecs: number, callback?: () => void]) => ClientRequest) & { [ORIGINAL]?: SetTimeout };
interface Emitter {
  listenerCount(event: string): number;
}

/** The hooks instrumentation-http is configured with. */
export class NodeHttpCallJudge {
  /** What the options of the request being created show: startOutgoingSpanHook → requestHook. */
  private pending: OptionsProtections | undefined;

  constructor(private readonly ceilingMs: () => number) {}

  /** instrumentation-http `startOutgoingSpanHook`: what the options (got's too) and axios show. */
  readonly startOutgoingSpanHook = (options: RequestOptions): Attributes => {
    try {
      // instrumentation-http calls requestHook right after, in the same call, for this request.
      const signal = signalProtection(options.signal);
      this.pending = { signal: signal === undefined ? [] : [signal], got: gotRequestProtections(options) };
      const axios = axiosCallProtections(context.active());
      return judgementAttributes(judge([...this.pending.signal, ...(axios ?? this.pending.got ?? [])], this.ceilingMs()));
    } catch (error) {
      this.pending = undefined;
      reportHookFailure('startOutgoingSpanHook', error);
      return {};
    }
  };

  /**
   * instrumentation-http `requestHook`: once the code that created the request has run on (a
   * microtask later, long before any response), its timeout handlers are in place; the
   * judgement is written again with them.
   */
  readonly requestHook = (span: Span, request: ClientRequest | IncomingMessage): void => {
    try {
      const fromOptions = this.pending ?? { signal: [], got: undefined };
      this.pending = undefined;
      if (!isClientRequest(request)) return;
      const axios = axiosCallProtections(context.active());
      queueMicrotask(() => {
        try {
          // axios and got arm their timers on requests the caller never sees: their config says it all.
          const own = axios ?? fromOptions.got ?? timeoutHandlerProtections(request);
          if (axios === undefined && fromOptions.got === undefined) reportUnseenClient(request);
          recordJudgement(span, judge([...fromOptions.signal, ...own], this.ceilingMs()));
        } catch (error) {
          reportHookFailure('requestHook', error);
        }
      });
    } catch (error) {
      reportHookFailure('requestHook', error);
    }
  };
}

/** A request's own options: its signal, and got's tag when got made it. */
interface OptionsProtections {
  readonly signal: readonly Protection[];
  readonly got: readonly Protection[] | undefined;
}

/** Records the delay of `ClientRequest#setTimeout` calls (once). Returns the undo. */
export function recordSetTimeoutDelays(ClientRequestClass: { prototype: ClientRequest }): () => void {
  const proto = ClientRequestClass.prototype as ClientRequest & { setTimeout: SetTimeout };
  const original = proto.setTimeout;
  if (typeof original !== 'function' || original[ORIGINAL] !== undefined) return () => {};
  const wrapped: SetTimeout = function setTimeout(this: ClientRequest, ...args) {
    try {
      setTimeoutDelays.set(this, Number(args[0]));
    } catch {
      // Remembering a delay is never worth an error in the app.
    }
    return original.apply(this, args);
  };
  wrapped[ORIGINAL] = original;
  proto.setTimeout = wrapped;
  return () => {
    if (proto.setTimeout === wrapped) proto.setTimeout = original;
  };
}

function timeoutHandlerProtections(request: ClientRequest): Protection[] {
  const redirectable = (request as ClientRequest & { _redirectable?: unknown })._redirectable;
  if (isEmitter(redirectable)) {
    // follow-redirects outside axios: its wrapper runs a timer of its own whose delay it does
    // not expose; a handler on the wrapper means the caller bounded the call.
    return redirectable.listenerCount('timeout') > 0 ? [{ source: 'follow-redirects timeout', ms: undefined }] : [];
  }
  if (request.listenerCount('timeout') === 0) return [];
  // The `timeout` option is kept as `request.timeout`; the agent's applies when it is unset.
  const { timeout, agent } = request as ClientRequest & { timeout?: unknown; agent?: { options?: { timeout?: unknown } } };
  const delay = setTimeoutDelays.has(request) ? setTimeoutDelays.get(request) : (timeout ?? agent?.options?.timeout);
  const protection = timerProtection('socket timeout', delay);
  return protection === undefined ? [] : [protection];
}

/**
 * axios or got by their default User-Agent, on a request their patch did not see: loaded as ES
 * modules without the loader hook (or bundled), their timeouts and signals go unseen.
 */
function reportUnseenClient(request: ClientRequest): void {
  const userAgent = request.getHeader('user-agent');
  if (typeof userAgent !== 'string') return;
  const client = userAgent.startsWith('axios/') ? 'axios' : userAgent.startsWith('got ') ? 'got' : undefined;
  if (client === undefined) return;
  reportOnce(
    `${client}:unseen`,
    `${client} calls are made without request-budget seeing ${client}'s options (loaded as an ES module without the loader hook, or bundled?): their timeouts and signals are not seen and they may count as untimed. Start the app with \`node --import @request-budget/node/register\`.`,
  );
}

function isEmitter(value: unknown): value is Emitter {
  return typeof value === 'object' && value !== null && typeof (value as Emitter).listenerCount === 'function';
}

function isClientRequest(request: ClientRequest | IncomingMessage): request is ClientRequest {
  return typeof (request as ClientRequest).setTimeout === 'function' && typeof (request as ClientRequest).getHeader === 'function';
}
