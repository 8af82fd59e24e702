/**
 * The ids of the last `capacity` traces flushed, to tell a late span (its trace was judged
 * already) from the first span of a new trace. Kept as 64-bit digests in a ring, found through an
 * open-addressing table: no string, Map entry or number object per id. A string and a Map entry
 * for each of --max-traces ids (50,000 by default) were 4–5 MiB of old-generation objects, marked
 * at every full collection, and a Map update per flushed trace.
 *
 * A digest is two 32-bit hashes of the id's characters, seeded at random for each instance (as
 * V8 seeds its own string hashes): a sender cannot choose ids that crowd one part of the table or
 * share a digest. Two ids share one with a chance of about 2^-64, so a span of a new trace is
 * counted late by mistake with a chance of about capacity × 2^-64 (below 10^-14 at 50,000).
 * Nothing but the late-span count reads the answer.
 */
import { randomFillSync } from 'node:crypto';

/** No ring slot in a table entry (entries hold slot + 1). */
const EMPTY = 0;
/** Slots to start with: the ring and its table grow (doubling) up to the capacity as ids come. */
const FIRST_SLOTS = 1024;

export class RecentTraceIds {
  /** Per ring slot: the digest of the id flushed there (two words). */
  private ring: Uint32Array;
  /** Open addressing, linear probing: ring slot + 1 of the latest flush of each digest. */
  private table: Int32Array;
  private mask: number;
  private next = 0;
  private filled = 0;
  // The digest of the id last looked at.
  private hi = 0;
  private lo = 0;
  /**
   * `seeds`: the two words the digests are seeded with; at random by default, so that a sender
   * cannot crowd the table (tests give fixed ones to walk the same table states every run).
   */
  constructor(
    private readonly capacity: number,
    private readonly seeds: Uint32Array = randomFillSync(new Uint32Array(2)),
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, not ${capacity}`);
    this.ring = new Uint32Array(0);
    this.table = new Int32Array(0);
    this.mask = 0;
    this.grow(Math.min(capacity, FIRST_SLOTS));
  }

  /** Flushes remembered now (at most capacity; an id flushed twice counts twice). */
  get size(): number {
    return this.filled;
  }

  /** Whether `traceId` was among the last `capacity` flushed. */
  has(traceId: string): boolean {
    this.digest(traceId);
    return this.table[this.find()] !== EMPTY;
  }

  /** Remembers `traceId` as flushed now; the oldest of the last `capacity` is forgotten. */
  add(traceId: string): void {
    const slot = this.next;
    this.next = slot + 1 === this.capacity ? 0 : slot + 1;
    if (this.filled === this.capacity) this.forget(slot);
    else {
      // Filling up, the slots are taken in order: the ring is full when the next one is past it.
      if (slot * 2 === this.ring.length) this.grow(Math.min(this.capacity, slot * 2));
      this.filled += 1;
    }
    this.digest(traceId);
    const { ring } = this;
    ring[slot * 2] = this.hi;
    ring[slot * 2 + 1] = this.lo;
    // Found or not, the entry now points at this latest flush.
    this.table[this.find()] = slot + 1;
  }

  /** A ring of `slots` with the ids so far, and a table at most half full (short probes) to find them. */
  private grow(slots: number): void {
    const ring = new Uint32Array(slots * 2);
    ring.set(this.ring);
    this.ring = ring;
    let size = 2;
    while (size < slots * 2) size *= 2;
    this.table = new Int32Array(size);
    this.mask = size - 1;
    // In flush order: an id flushed twice ends up pointing at its later slot.
    for (let slot = 0; slot < this.filled; slot += 1) {
      this.hi = ring[slot * 2];
      this.lo = ring[slot * 2 + 1];
      this.table[this.find()] = slot + 1;
    }
  }

  /** The slot is about to be reused: its id is forgotten, unless flushed again since (a later slot holds it). */
  private forget(slot: number): void {
    this.hi = this.ring[slot * 2];
    this.lo = this.ring[slot * 2 + 1];
    const at = this.find();
    if (this.table[at] === slot + 1) this.remove(at);
  }

  /** The table index of the current digest, or of the empty entry where it would go. */
  private find(): number {
    const { table, ring, mask, hi, lo } = this;
    for (let at = hi & mask; ; at = (at + 1) & mask) {
      const entry = table[at];
      if (entry === EMPTY) return at;
      const slot = entry - 1;
      if (ring[slot * 2] === hi && ring[slot * 2 + 1] === lo) return at;
    }
  }

  /** Empties the entry at `at`, moving back the entries after it that would no longer be found. */
  private remove(at: number): void {
    const { table, ring, mask } = this;
    let hole = at;
    for (let probe = (at + 1) & mask; table[probe] !== EMPTY; probe = (probe + 1) & mask) {
      const home = ring[(table[probe] - 1) * 2] & mask;
      // The entry stays unless its home is cyclically outside (hole, probe].
      const stays = hole <= probe ? home > hole && home <= probe : home > hole || home <= probe;
      if (stays) continue;
      table[hole] = table[probe];
      hole = probe;
    }
    table[hole] = EMPTY;
  }

  /** Sets hi and lo to two FNV-1a hashes of the id (different seeds and mixing). */
  private digest(traceId: string): void {
    let hi = 0x811c9dc5 ^ this.seeds[0];
    let lo = 0x01000193 ^ this.seeds[1];
    for (let index = 0; index < traceId.length; index += 1) {
      const code = traceId.charCodeAt(index);
      hi = Math.imul(hi ^ code, 0x01000193);
      lo = Math.imul(lo ^ code, 0x5bd1e995);
      lo ^= lo >>> 15;
    }
    this.hi = (hi ^ (hi >>> 16)) >>> 0;
    this.lo = lo >>> 0;
  }
}
