/**
 * The strings that span records share (process keys, query fingerprints, database systems, HTTP
 * methods), each kept once with the number of records that refer to it: a record keeps a 32-bit
 * index in its slot (record-store.ts) instead of a reference. References are 8 bytes each of the
 * JavaScript heap, for every full collection to mark and update; three per record were 4–5 MiB of
 * old generation at the benchmark's load. A string goes when the last record that refers to it does.
 */

/**
 * A string kept here beside its characters: its header, its Map entry, its slot in the string
 * array and its count.
 */
export const INTERNED_STRING_BYTES = 64;

/** The index of no string. */
export const NO_STRING = 0;

export class InternedStrings {
  private readonly indexes = new Map<string, number>();
  // Index 0 is NO_STRING.
  private readonly strings: (string | undefined)[] = [undefined];
  private counts = new Int32Array(64);
  private readonly free: number[] = [];
  private held = 0;

  /** Memory the strings kept take, each counted once. */
  get bytes(): number {
    return this.held;
  }

  /** Strings kept now. */
  get size(): number {
    return this.indexes.size;
  }

  /** Takes a hold on `text` (NO_STRING for undefined); each hold is let go by one release. */
  hold(text: string | undefined): number {
    if (text === undefined) return NO_STRING;
    let index = this.indexes.get(text);
    if (index === undefined) {
      index = this.free.pop() ?? this.strings.length;
      this.strings[index] = text;
      if (index >= this.counts.length) {
        const counts = new Int32Array(this.counts.length * 2);
        counts.set(this.counts);
        this.counts = counts;
      }
      this.indexes.set(text, index);
      this.held += INTERNED_STRING_BYTES + text.length;
    }
    this.counts[index] += 1;
    return index;
  }

  /** The string at `index` (undefined for NO_STRING). */
  get(index: number): string | undefined {
    return this.strings[index];
  }

  /** Lets go of one hold on `index`; the string goes with the last. */
  release(index: number): void {
    if (index === NO_STRING) return;
    this.counts[index] -= 1;
    if (this.counts[index] > 0) return;
    const text = this.strings[index]!;
    this.indexes.delete(text);
    this.strings[index] = undefined;
    this.free.push(index);
    this.held -= INTERNED_STRING_BYTES + text.length;
  }
}
