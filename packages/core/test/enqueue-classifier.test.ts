import { describe, expect, it } from 'vitest';
import { enqueuedMessages, isEnqueueSpan } from '../src/enqueue-classifier';

describe('enqueue classifier', () => {
  it('an enqueue is a PRODUCER span with a messaging.system', () => {
    expect(isEnqueueSpan('producer', { 'messaging.system': 'bullmq' })).toBe(true);
    expect(isEnqueueSpan('producer', { 'messaging.system': '' })).toBe(false);
    expect(isEnqueueSpan('producer', { 'bullmq.queue.name': 'mail' })).toBe(false);
    expect(isEnqueueSpan('client', { 'messaging.system': 'rabbitmq' })).toBe(false);
    expect(isEnqueueSpan('consumer', { 'messaging.system': 'rabbitmq' })).toBe(false);
  });

  it.each([
    [{}, 1],
    [{ 'messaging.batch.message_count': 20 }, 20],
    [{ 'messaging.batch.message_count': 0 }, 0],
    [{ 'messaging.batch.message_count': 3n }, 3],
    [{ 'messaging.batch.message_count': -1 }, 1],
    [{ 'messaging.batch.message_count': 2.5 }, 1],
    [{ 'messaging.batch.message_count': '7' }, 1],
  ])('counts %o as %i message(s)', (extra, expected) => {
    expect(enqueuedMessages('producer', { 'messaging.system': 'kafka', ...extra })).toBe(expected);
  });

  it('counts nothing for other spans', () => {
    expect(enqueuedMessages('internal', { 'messaging.system': 'kafka' })).toBeUndefined();
  });
});
