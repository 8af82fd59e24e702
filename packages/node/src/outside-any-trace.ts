/**
 * Runs request-budget's own network work (alert deliveries) outside every trace, as the SDK's
 * exporters do: in the root context with tracing suppressed. Timers and requests started inside
 * inherit it, so an alert posted later is neither a span of the request that breached nor of
 * whichever request happens to be running then.
 */
import { context, ROOT_CONTEXT } from '@opentelemetry/api';
import { suppressTracing } from '@opentelemetry/core';

export function outsideAnyTrace<T>(fn: () => T): T {
  return context.with(suppressTracing(ROOT_CONTEXT), fn);
}
