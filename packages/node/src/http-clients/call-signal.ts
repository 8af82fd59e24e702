/**
 * The abort signal of the undici call under way — fetch()'s init signal, or the `signal` option
 * of undici's `request`/`stream`/`pipeline`/`upgrade`/`connect` — kept in the OpenTelemetry
 * context by thin wrappers around those functions, for the undici span hook to read: the span is
 * created deep inside undici, from a diagnostics channel message that carries no options.
 */
import { context, createContextKey, type Context } from '@opentelemetry/api';
import type { Protection } from './timeout-judgement';

const CALL_SIGNAL = createContextKey('request-budget undici call signal');

/**
 * What a call's arguments show: its signal's protection (undefined: no signal), or that it has a
 * signal that cannot be traced (a fetch `Request` object's).
 */
export type CallSignal = { readonly signal: Protection | undefined } | 'unknown signal';

/** The call signal in `ctx`, or undefined outside any wrapped call. */
export function callSignalOf(ctx: Context): CallSignal | undefined {
  return ctx.getValue(CALL_SIGNAL) as CallSignal | undefined;
}

/** Runs `fn` with `call` as the call signal. */
export function withCallSignal<T>(call: CallSignal, fn: () => T): T {
  return context.with(context.active().setValue(CALL_SIGNAL, call), fn);
}
