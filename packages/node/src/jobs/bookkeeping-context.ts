/**
 * The queue library's own bookkeeping inside a job's span (pg-boss completes or fails the job,
 * refreshes its heartbeat, opens and commits its transaction while its `process` span is active)
 * is not the job's cost. Run in a bookkeeping context, it stays in the job's trace under the
 * job's span id, but is charged to no root: the active span there is a non-recording stand-in
 * with the job span's identity, and cost attribution finds no tally on it.
 */
import { trace, type Context } from '@opentelemetry/api';

/** `active` with its span replaced by a stand-in of the same identity (trace id, span id, flags). */
export function bookkeepingContext(active: Context): Context {
  const span = trace.getSpan(active);
  if (span === undefined) return active;
  return trace.setSpan(active, trace.wrapSpanContext(span.spanContext()));
}

/**
 * `active` without its span: for work a queue library starts on a caller's behalf and keeps
 * running (pg-boss's polling loop, its maintenance timers), which belongs to no request or job,
 * whoever called it.
 */
export function outsideAnySpan(active: Context): Context {
  return trace.getSpan(active) === undefined ? active : trace.deleteSpan(active);
}
