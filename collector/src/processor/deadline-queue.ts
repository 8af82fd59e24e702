/**
 * Items each with the deadline they were queued for, taken in the order they came (deadlines
 * queued later are never earlier), in O(1) as AgeQueue. Item and deadline side by side in one
 * array: no object per entry (the trace window queues one per root, a few thousand a second), and
 * a deadline in whole milliseconds is a small integer stored in place.
 */
export class DeadlineQueue<T extends object> {
  private entries: (T | number)[] = [];
  private head = 0;

  get size(): number {
    return (this.entries.length - this.head) / 2;
  }

  push(item: T, deadlineMs: number): void {
    this.entries.push(item, deadlineMs);
  }

  /** The oldest item, left in; undefined when empty. */
  peekItem(): T | undefined {
    return this.head < this.entries.length ? (this.entries[this.head] as T) : undefined;
  }

  /** The deadline the oldest item was queued for; Infinity when empty. */
  peekDeadline(): number {
    return this.head < this.entries.length ? (this.entries[this.head + 1] as number) : Infinity;
  }

  /** Drops the oldest entry. */
  shift(): void {
    if (this.head >= this.entries.length) return;
    this.head += 2;
    // What was taken is dropped once it is most of the array.
    if (this.head > 2048 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  clear(): void {
    this.entries = [];
    this.head = 0;
  }
}
