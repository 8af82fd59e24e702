/**
 * Decides whether a finished span put jobs or messages on a queue, and how many, from its kind and
 * attributes alone, so the in-process processor and the collector count `cost.jobs.enqueued` alike.
 *
 * An enqueue is a PRODUCER span with `messaging.system` (the messaging semantic conventions:
 * BullMQ's `add`, amqplib's `publish`, pg-boss's `send`, a Kafka producer of another language).
 * What runs beneath it is the queue library's own work to enqueue (BullMQ's Redis script, pg-boss's
 * INSERT): counted as the enqueue, not as the root's queries or calls.
 */
import { MESSAGING_BATCH_MESSAGE_COUNT, MESSAGING_SYSTEM } from './attributes';
import type { AttributeMap, SpanKindName } from './span-classifier';

/** Whether the span is an enqueue: PRODUCER, with a non-empty `messaging.system`. */
export function isEnqueueSpan(kind: SpanKindName, attributes: AttributeMap): boolean {
  if (kind !== 'producer') return false;
  const system = attributes[MESSAGING_SYSTEM];
  return typeof system === 'string' && system.length > 0;
}

/**
 * Messages the span enqueued: `messaging.batch.message_count` when it is a whole number, else one;
 * undefined when the span is no enqueue.
 */
export function enqueuedMessages(kind: SpanKindName, attributes: AttributeMap): number | undefined {
  if (!isEnqueueSpan(kind, attributes)) return undefined;
  const count = attributes[MESSAGING_BATCH_MESSAGE_COUNT];
  if (typeof count === 'number' && Number.isSafeInteger(count) && count >= 0) return count;
  if (typeof count === 'bigint' && count >= 0n && count <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(count);
  return 1;
}
