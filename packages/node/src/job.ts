/**
 * withBudget(name, fn): runs a background job in a root span of its own, so its queries, calls
 * and heap are attributed to it (not to a request that happened to start it) and judged against
 * the `jobs` rules of the budget file.
 */
import { context, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { JOB_NAME_ATTRIBUTE } from './budget-span-processor';
import { ROOT_MARKER_ATTRIBUTE } from './cost-span-processor';

const TRACER_NAME = '@request-budget/node';

/**
 * Runs `fn` as the job `name` (e.g. `email.send`) and returns what it returns. The job's span is
 * ended when the returned promise settles; an error is recorded on it and rethrown unchanged.
 * When request-budget is not running, `fn` simply runs.
 */
export async function withBudget<T>(name: string, fn: (span: Span) => T | Promise<T>): Promise<T> {
  const tracer = trace.getTracer(TRACER_NAME);
  // Started inside a request, a job stays in that request's trace, but as a root of its own cost.
  return tracer.startActiveSpan(
    `job ${name}`,
    { attributes: { [ROOT_MARKER_ATTRIBUTE]: true, [JOB_NAME_ATTRIBUTE]: name } },
    context.active(),
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
