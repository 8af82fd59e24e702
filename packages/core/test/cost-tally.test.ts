import { describe, expect, it } from 'vitest';
import { CostTally, MAX_FINGERPRINTS_PER_TALLY } from '../src/cost-tally';
import { FingerprintCache } from '../src/fingerprint';
import { heapConfidence } from '../src/heap-confidence';

const db = (statement: string, rows?: number) => ({ type: 'db' as const, statement, rows });

describe('CostTally', () => {
  it('writes zeros and no repeated statement for a request without queries', () => {
    expect(new CostTally(new FingerprintCache()).toAttributes()).toEqual({
      'cost.db.queries': 0,
      'cost.db.time_ms': 0,
      'cost.db.rows': 0,
      'cost.db.bytes': 0,
      'cost.db.repeated_count': 0,
      'cost.http_client.calls': 0,
      'cost.http_client.time_ms': 0,
      'cost.http_client.untimed': 0,
      'cost.jobs.enqueued': 0,
    });
  });

  it('sums queries, time and rows and finds the most repeated fingerprint', () => {
    const tally = new CostTally(new FingerprintCache());
    tally.add(db('SELECT id FROM users', 3), 1.25);
    for (let id = 1; id <= 3; id += 1) tally.add(db(`SELECT * FROM orders WHERE user_id = ${id}`, 2), 0.5);
    tally.add({ type: 'http_client', timed: false }, 10);
    tally.add({ type: 'http_client', timed: true }, 5);
    tally.add({ type: 'http_client', timed: undefined }, 1);
    tally.addEnqueued(1);
    tally.addEnqueued(3);
    expect(tally.toAttributes()).toEqual({
      'cost.db.queries': 4,
      'cost.db.time_ms': 2.75,
      'cost.db.rows': 9,
      'cost.db.repeated_count': 3,
      'cost.db.repeated_statement': 'SELECT * FROM orders WHERE user_id = ?',
      'cost.http_client.calls': 3,
      'cost.http_client.time_ms': 16,
      'cost.http_client.untimed': 1,
      'cost.jobs.enqueued': 4,
    });
    expect(tally.statements()).toEqual([
      { fingerprint: 'SELECT * FROM orders WHERE user_id = ?', count: 3 },
      { fingerprint: 'SELECT id FROM users', count: 1 },
    ]);
  });

  it('sums the wire bytes of the rows when every operation that reported rows reported their bytes', () => {
    const tally = new CostTally(new FingerprintCache());
    tally.add({ ...db('SELECT a FROM t', 2), bytes: 36 }, 1);
    tally.add({ ...db('SELECT b FROM t', 0), bytes: 0 }, 1);
    tally.add({ ...db('SELECT c FROM t', 5000), bytes: 1_234_567 }, 1);
    // Reported neither (a Redis command, a failed query): no rows of its own to weigh.
    tally.add(db('GET key'), 1);
    const written: Record<string, unknown> = {};
    tally.writeAttributes({ setAttribute: (key, value) => (written[key] = value) });
    expect([tally.toAttributes()['cost.db.bytes'], written['cost.db.bytes'], tally.rows]).toEqual([1_234_603, 1_234_603, 5002]);
  });

  it('writes no cost.db.bytes once an operation reported rows without their bytes: never a lower bound', () => {
    const tally = new CostTally(new FingerprintCache());
    tally.add({ ...db('SELECT a FROM t', 2), bytes: 36 }, 1);
    tally.add(db('SELECT b FROM t', 0), 1);
    tally.add({ ...db('SELECT c FROM t', 3), bytes: 54 }, 1);
    const written: Record<string, unknown> = {};
    tally.writeAttributes({ setAttribute: (key, value) => (written[key] = value) });
    expect(['cost.db.bytes' in tally.toAttributes(), 'cost.db.bytes' in written, written['cost.db.rows']]).toEqual([false, false, 5]);
  });

  it('keeps a bounded number of fingerprints, counts every query, and still finds a late N+1', () => {
    const tally = new CostTally(new FingerprintCache());
    for (let i = 0; i < MAX_FINGERPRINTS_PER_TALLY; i += 1) tally.add(db(`SELECT col_${i} FROM t`), 0);
    for (let id = 0; id < 500; id += 1) tally.add(db(`SELECT * FROM orders WHERE id = ${id}`), 0);
    expect(tally.queries).toBe(MAX_FINGERPRINTS_PER_TALLY + 500);
    expect(tally.statements()).toHaveLength(MAX_FINGERPRINTS_PER_TALLY);
    // It took the place of a statement seen once, so its count may be one too high, never low.
    expect(tally.mostRepeated()).toEqual({ fingerprint: 'SELECT * FROM orders WHERE id = ?', count: 501 });
  });
});

describe('heapConfidence', () => {
  it.each([
    [1, false, 'high'],
    [1, true, 'medium'],
    [2, false, 'low'],
    [7, true, 'low'],
  ] as const)('in_flight=%i gcRan=%s → %s', (inFlight, gc, expected) => {
    expect(heapConfidence(inFlight, gc)).toBe(expected);
  });
});
