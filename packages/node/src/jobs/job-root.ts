/**
 * A background job as a root of its own: its queries, calls and heap are its cost (never the
 * cost of a request that enqueued it, nor of another job beside it), judged against the `jobs`
 * rules of the budget file by its name. withBudget and the queue integrations (jobs/*.ts) all
 * open their roots here.
 */
import { context, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { JOB_NAME_ATTRIBUTE, ROOT_MARKER_ATTRIBUTE } from '@request-budget/core';

const TRACER_NAME = '@request-budget/node';

export interface JobRootOptions {
  /** Further attributes for the job's span (queue, job id, attempt…). */
  readonly attributes?: Attributes;
  /**
   * The context the job's span starts in: a parent propagated with the job links it to the
   * trace that enqueued it. @default the active context
   */
  readonly parentContext?: Context;
  /** @default SpanKind.CONSUMER for queue jobs; withBudget uses INTERNAL */
  readonly kind?: SpanKind;
}

/**
 * Runs `fn` as the job `name` (e.g. `email.send`) in a root span of its own and returns what it
 * returns. The span ends when the returned promise settles; an error is recorded on it and
 * rethrown unchanged. When request-budget is not running, `fn` simply runs (the API is a no-op).
 */
export function runAsJob<T>(name: string, fn: (span: Span) => T | Promise<T>, options: JobRootOptions = {}): Promise<T> {
  const tracer = trace.getTracer(TRACER_NAME);
  return tracer.startActiveSpan(
    `job ${name}`,
    {
      kind: options.kind ?? SpanKind.CONSUMER,
      attributes: { ...options.attributes, [ROOT_MARKER_ATTRIBUTE]: true, [JOB_NAME_ATTRIBUTE]: name },
    },
    options.parentContext ?? context.active(),
    async (span) => {
      try {
        return await fn(span);
      } catch (error) {
        span.recordException(error instanceof Error ? error : String(error));
        span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
        throw error;
      } finally {
        span.end();
      }
    },
  );
}
