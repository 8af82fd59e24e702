/**
 * withBudget(name, fn): runs a hand-rolled background job (a loop, a cron function) in a root
 * span of its own, so its queries, calls and heap are attributed to it and judged against the
 * `jobs` rules of the budget file. Jobs on BullMQ, RabbitMQ (amqplib) and pg-boss get theirs
 * without code (see jobs/).
 */
import { SpanKind, type Span } from '@opentelemetry/api';
import { runAsJob } from './jobs/job-root';

/**
 * Runs `fn` as the job `name` (e.g. `email.send`) and returns what it returns. The job's span is
 * ended when the returned promise settles; an error is recorded on it and rethrown unchanged.
 * Started inside a request, the job stays in that request's trace, but as a root of its own cost.
 * When request-budget is not running, `fn` simply runs.
 */
export function withBudget<T>(name: string, fn: (span: Span) => T | Promise<T>): Promise<T> {
  return runAsJob(name, fn, { kind: SpanKind.INTERNAL });
}
