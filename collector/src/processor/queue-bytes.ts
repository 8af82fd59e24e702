/**
 * Estimated bytes of the spans in one downstream's queue. The queue tells how many spans leave it
 * (delivered, refused, dropped), not which: they leave about in the order they came — batches are
 * taken oldest first, a few under way at once — so the bytes of the oldest are taken off. Exact
 * but for the order of the batches under way.
 */
import type { CollectedSpan } from '../otlp/otlp-model';

export class QueueBytes {
  private sizes: number[] = [];
  private head = 0;
  private total = 0;

  get bytes(): number {
    return this.total;
  }

  add(spans: readonly CollectedSpan[]): void {
    for (const span of spans) {
      this.sizes.push(span.estimatedBytes);
      this.total += span.estimatedBytes;
    }
  }

  /** `count` spans left the queue. */
  remove(count: number): void {
    const end = Math.min(this.sizes.length, this.head + count);
    for (let index = this.head; index < end; index += 1) this.total -= this.sizes[index];
    this.head = end;
    // Drop what was taken off once it is most of the array.
    if (this.head > 1024 && this.head * 2 > this.sizes.length) {
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
    if (this.head === this.sizes.length) this.total = 0;
  }
}
