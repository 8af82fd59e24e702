/** The trace window's queue of deadlines (deadline-queue.ts): items with their deadlines, oldest first. */
import { describe, expect, it } from 'vitest';
import { DeadlineQueue } from '../src/processor/deadline-queue';

describe('a deadline queue', () => {
  it('gives back each item with the deadline it was queued for, in the order they came, across compactions', () => {
    const queue = new DeadlineQueue<{ id: number }>();
    expect(queue.peekItem()).toBeUndefined();
    expect(queue.peekDeadline()).toBe(Infinity);
    const items = Array.from({ length: 5000 }, (_, id) => ({ id }));
    // The same item twice (a later root moves its deadline on): both entries stay, in order.
    for (const item of items) queue.push(item, 1000 + item.id);
    queue.push(items[3]!, 9000);
    expect(queue.size).toBe(5001);
    const taken: [number, number][] = [];
    for (let index = 0; index < 4000; index += 1) {
      taken.push([queue.peekItem()!.id, queue.peekDeadline()]);
      queue.shift();
    }
    // Pushed after the array was compacted (past 2048 taken, more than half of it).
    queue.push(items[0]!, 9001);
    while (queue.peekItem() !== undefined) {
      taken.push([queue.peekItem()!.id, queue.peekDeadline()]);
      queue.shift();
    }
    expect(taken).toEqual([...items.map((item): [number, number] => [item.id, 1000 + item.id]), [3, 9000], [0, 9001]]);
    expect(queue.size).toBe(0);
    queue.shift();
    expect(queue.size).toBe(0);
    queue.push(items[1]!, 1);
    queue.clear();
    expect(queue.peekDeadline()).toBe(Infinity);
  });
});
