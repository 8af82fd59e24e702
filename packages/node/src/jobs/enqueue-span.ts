/**
 * An enqueue (a job added, a message published) as a PRODUCER span with the messaging attributes
 * core's enqueue-classifier counts: the request or job it runs under gets `cost.jobs.enqueued`,
 * and what the queue library does inside it (BullMQ's Redis script, pg-boss's INSERT) is the
 * library's own work, not the root's queries. The queue integrations in this folder share it.
 */
import { context, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { MESSAGING_BATCH_MESSAGE_COUNT, MESSAGING_SYSTEM } from '@request-budget/core';

/** Messaging semconv: what the operation does (`send` for an enqueue). */
export const MESSAGING_OPERATION_TYPE = 'messaging.operation.type';
/** Messaging semconv: the library's own name for the operation, e.g. `add`. */
export const MESSAGING_OPERATION_NAME = 'messaging.operation.name';
/** Messaging semconv: the queue (or exchange, topic) the message goes to. */
export const MESSAGING_DESTINATION_NAME = 'messaging.destination.name';
/** Messaging semconv: the message's (the job's) id. */
export const MESSAGING_MESSAGE_ID = 'messaging.message.id';

export interface EnqueueDescription {
  /** `messaging.system`, e.g. `bullmq`. */
  readonly system: string;
  /** `messaging.operation.name`, e.g. `add`, `addBulk`. */
  readonly operation: string;
  /** The queue; for a batch to several queues, the first. */
  readonly destination: string | undefined;
  /** Messages of a batch (`messaging.batch.message_count`); undefined for a single message. */
  readonly batchSize?: number;
  readonly attributes?: Attributes;
}

/**
 * Runs `enqueue` inside a PRODUCER span describing it, and returns exactly what it returns (the
 * same promise, never a wrapper). The span ends when the result settles; `describeResult` may add
 * what only the result tells (the job id). Throws only what `enqueue` throws.
 */
export function runEnqueue<T>(tracer: Tracer, description: EnqueueDescription, enqueue: () => T, describeResult?: (span: Span, result: Awaited<T>) => void): T {
  const span = startEnqueueSpan(tracer, description);
  if (span === undefined) return enqueue();
  let result: T;
  try {
    result = context.with(trace.setSpan(context.active(), span), enqueue);
  } catch (error) {
    endSpan(span, { error });
    throw error;
  }
  if (isPromiseLike(result)) {
    // A derived promise with both handlers: the caller's own promise is returned untouched.
    result.then(
      (value) => {
        safely(() => describeResult?.(span, value as Awaited<T>));
        endSpan(span, undefined);
      },
      (error: unknown) => endSpan(span, { error }),
    );
  } else {
    safely(() => describeResult?.(span, result as Awaited<T>));
    endSpan(span, undefined);
  }
  return result;
}

function startEnqueueSpan(tracer: Tracer, description: EnqueueDescription): Span | undefined {
  try {
    const attributes: Attributes = {
      ...description.attributes,
      [MESSAGING_SYSTEM]: description.system,
      [MESSAGING_OPERATION_TYPE]: 'send',
      [MESSAGING_OPERATION_NAME]: description.operation,
    };
    if (description.destination !== undefined) attributes[MESSAGING_DESTINATION_NAME] = description.destination;
    if (description.batchSize !== undefined) attributes[MESSAGING_BATCH_MESSAGE_COUNT] = description.batchSize;
    const name = description.destination === undefined ? description.operation : `${description.operation} ${description.destination}`;
    return tracer.startSpan(name, { kind: SpanKind.PRODUCER, attributes });
  } catch {
    return undefined; // no span: the enqueue runs as it would without request-budget
  }
}

function endSpan(span: Span, failure: { error: unknown } | undefined): void {
  safely(() => {
    if (failure !== undefined) {
      const { error } = failure;
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    }
    span.end();
  });
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}

function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // describing the span is best effort; the enqueue's result is the caller's
  }
}
