/**
 * Sends a request with a fresh W3C `traceparent`, so the app's server span joins a trace id the
 * test chose, and waits for that span (and the rest of its trace) at the receiver.
 */
import { randomBytes } from 'node:crypto';
import { get, type HttpResult } from './http';
import type { OtlpReceiver, ReceivedSpan } from './otlp-receiver';
import { OtlpSpanKind } from './received-span';

export interface TracedResult {
  readonly response: HttpResult;
  /** The app's SERVER span for this request. */
  readonly server: ReceivedSpan;
  /** Every span of the trace received so far (the server span and its descendants). */
  readonly trace: ReceivedSpan[];
}

/** Starts a request whose trace can be found later with {@link awaitServerSpan}. */
export interface TracedRequest {
  readonly response: HttpResult;
  readonly traceId: string;
  /** The span id the test sent as parent: the app's server span for this request has it. */
  readonly parentSpanId: string;
}

/** `sampled: false` sends the trace flags 00: a parent-based sampler then drops the request. */
export async function tracedGet(url: string, { sampled = true }: { sampled?: boolean } = {}): Promise<TracedRequest> {
  const traceId = randomBytes(16).toString('hex');
  const parentSpanId = randomBytes(8).toString('hex');
  const response = await get(url, { headers: { traceparent: `00-${traceId}-${parentSpanId}-${sampled ? '01' : '00'}` }, timeoutMs: 15_000 });
  return { response, traceId, parentSpanId };
}

/**
 * Waits until the server span of the request has arrived, then returns it and its trace. Other
 * server spans in the trace (an upstream the request called, say) are not it: its parent is the
 * span id the test sent.
 */
export async function awaitServerSpan(receiver: OtlpReceiver, request: TracedRequest, timeoutMs = 10_000): Promise<Omit<TracedResult, 'response'>> {
  const isIt = (s: ReceivedSpan) => s.traceId === request.traceId && s.kind === OtlpSpanKind.SERVER && s.parentSpanId === request.parentSpanId;
  const spans = await receiver.waitFor((all) => all.some(isIt), { timeoutMs });
  return { server: spans.find(isIt)!, trace: spans.filter((s) => s.traceId === request.traceId) };
}

/** GET with a chosen trace id and return the server span carrying the request's cost record. */
export async function costOf(receiver: OtlpReceiver, url: string): Promise<TracedResult> {
  const request = await tracedGet(url);
  return { response: request.response, ...(await awaitServerSpan(receiver, request)) };
}
