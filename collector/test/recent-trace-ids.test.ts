/**
 * The trace ids flushed lately (recent-trace-ids.ts), which tell a late span from a new trace's:
 * exactly the last `capacity` flushes remembered, an id flushed twice kept until its later flush
 * is forgotten, whatever the table's probing and growth do.
 */
import { describe, expect, it } from 'vitest';
import { RecentTraceIds } from '../src/processor/recent-trace-ids';

// Ids from a seeded sequence, and the table's hashes from fixed seeds: every run walks the same
// table states (wrap-around and deletion inside clusters included). One more pass per capacity
// takes the random seeds the collector uses.
let idSeed = 1;
const newTraceId = (): string => {
  let id = '';
  for (let word = 0; word < 4; word += 1) id += ((idSeed = (Math.imul(idSeed, 1664525) + 1013904223) >>> 0) >>> 0).toString(16).padStart(8, '0');
  return id;
};

/** What the ids must answer: the ids of the last `capacity` flushes. */
class LastFlushes {
  private readonly flushes: string[] = [];
  constructor(private readonly capacity: number) {}
  add(id: string): void {
    this.flushes.push(id);
    if (this.flushes.length > this.capacity) this.flushes.shift();
  }
  has(id: string): boolean {
    return this.flushes.includes(id);
  }
}

describe('the trace ids flushed lately', () => {
  it('are the last `capacity` flushed: the oldest is forgotten as a new one comes', () => {
    const recent = new RecentTraceIds(3);
    const [a, b, c, d] = [newTraceId(), newTraceId(), newTraceId(), newTraceId()];
    for (const id of [a, b, c]) recent.add(id);
    expect([a, b, c, d].map((id) => recent.has(id))).toEqual([true, true, true, false]);
    recent.add(d);
    expect([a, b, c, d].map((id) => recent.has(id))).toEqual([false, true, true, true]);
    expect(recent.size).toBe(3);
  });

  it('keep an id flushed twice until its later flush is forgotten', () => {
    const recent = new RecentTraceIds(3);
    const [a, b, c, d, e] = [newTraceId(), newTraceId(), newTraceId(), newTraceId(), newTraceId()];
    recent.add(a);
    recent.add(b);
    recent.add(a); // late spans of a, judged apart
    recent.add(c);
    recent.add(d); // a's first flush forgotten: its second is still among the last three
    expect([a, b, c, d, e].map((id) => recent.has(id))).toEqual([true, false, true, true, false]);
    recent.add(e);
    expect([a, b, c, d, e].map((id) => recent.has(id))).toEqual([false, false, true, true, true]);
  });

  const fixedSeeds = [new Uint32Array([0x9e3779b9, 0x7f4a7c15]), new Uint32Array([1, 2]), new Uint32Array([0xdeadbeef, 0])];
  it.each([1, 2, 7, 1000, 1500, 5000].flatMap((capacity) => [...fixedSeeds.map((seeds) => [capacity, seeds] as const), [capacity, undefined] as const]))(
    'agree with the last flushes, capacity %i, seeds %s, ids repeating, through growth and wrap-around',
    (capacity, seeds) => {
      const recent = new RecentTraceIds(capacity, seeds);
      const model = new LastFlushes(capacity);
      // A pool a little larger than the capacity: ids come back while remembered and after.
      const pool = Array.from({ length: capacity + 3 }, () => newTraceId());
      let seed = capacity;
      const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % pool.length;
      let disagreements = 0;
      for (let step = 0; step < capacity * 6 + 50; step += 1) {
        const id = pool[next()];
        if (recent.has(id) !== model.has(id)) disagreements += 1;
        recent.add(id);
        model.add(id);
      }
      for (const id of pool) if (recent.has(id) !== model.has(id)) disagreements += 1;
      expect(disagreements).toBe(0);
      expect(recent.size).toBe(capacity);
    },
  );

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new RecentTraceIds(0)).toThrow('capacity must be a positive integer, not 0');
    expect(() => new RecentTraceIds(1.5)).toThrow('capacity must be a positive integer, not 1.5');
  });
});
