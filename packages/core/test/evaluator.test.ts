import { describe, expect, it } from 'vitest';
import type { ResolvedRule } from '../src/budget-rules';
import { costRecordFromAttributes, evaluateBudget, formatViolation, type CostRecord } from '../src/evaluator';

const rule = (overrides: Partial<ResolvedRule> = {}): ResolvedRule => ({
  name: 'GET /users/:id',
  limits: { queries: 10, dbTimeMs: 50, rows: 1000, repeatedQueries: 5, heapDeltaBytes: 1048576, durationMs: 300, httpClientCalls: 2, untimedHttpCalls: 0 },
  severity: 'warning',
  heapMinConfidence: 'medium',
  allowRepeated: [],
  ...overrides,
});

const cost = (overrides: Partial<CostRecord> = {}): CostRecord => ({
  durationMs: 100,
  queries: 3,
  dbTimeMs: 10,
  rows: 3,
  repeatedCount: 1,
  repeatedStatement: 'SELECT 1',
  heapDeltaBytes: 1000,
  heapConfidence: 'high',
  httpClientCalls: 0,
  httpClientUntimed: 0,
  ...overrides,
});

describe('evaluateBudget', () => {
  it('finds nothing within every limit, and nothing at exactly the limit', () => {
    expect(evaluateBudget(cost(), rule())).toEqual([]);
    expect(evaluateBudget(cost({ queries: 10, durationMs: 300, httpClientCalls: 2 }), rule())).toEqual([]);
  });

  it('reports every exceeded limit with value, limit and severity, in a fixed order', () => {
    const violations = evaluateBudget(
      cost({
        queries: 41,
        dbTimeMs: 75.25,
        rows: 5000,
        repeatedCount: 20,
        repeatedStatement: 'SELECT * FROM orders WHERE user_id = $1',
        heapDeltaBytes: 8388608,
        durationMs: 512.5,
        httpClientCalls: 3,
        httpClientUntimed: 1,
      }),
      rule({ severity: 'critical' }),
    );
    expect(violations.map(formatViolation)).toEqual([
      'db.queries 41>10',
      'db.time_ms 75.3>50',
      'db.rows 5000>1000',
      'db.repeated_count 20>5',
      'heap.delta_bytes 8388608>1048576',
      'duration_ms 512.5>300',
      'http_client.calls 3>2',
      'http_client.untimed 1>0',
    ]);
    expect(violations[3]).toEqual({
      metric: 'db.repeated_count',
      value: 20,
      limit: 5,
      severity: 'critical',
      statement: 'SELECT * FROM orders WHERE user_id = $1',
    });
  });

  it('judges heap only at the rule’s minimum confidence', () => {
    const big = { heapDeltaBytes: 9e6 };
    expect(evaluateBudget(cost({ ...big, heapConfidence: 'low' }), rule())).toEqual([]);
    expect(evaluateBudget(cost({ ...big, heapConfidence: 'medium' }), rule()).map(formatViolation)).toEqual(['heap.delta_bytes 9000000>1048576']);
    expect(evaluateBudget(cost({ ...big, heapConfidence: 'medium' }), rule({ heapMinConfidence: 'high' }))).toEqual([]);
    expect(evaluateBudget(cost({ ...big, heapConfidence: 'low' }), rule({ heapMinConfidence: 'low' }))).toHaveLength(1);
  });

  it('skips allowed repeated statements and judges the next most repeated', () => {
    const statements = [
      { fingerprint: 'SELECT * FROM prices WHERE sku = $1', count: 30 },
      { fingerprint: 'SELECT * FROM users WHERE id = $1', count: 7 },
      { fingerprint: 'SELECT 1', count: 1 },
    ];
    const allowPrices = rule({ allowRepeated: ['SELECT * FROM prices *'] });
    expect(evaluateBudget(cost({ statements, repeatedCount: 30 }), allowPrices)).toEqual([
      { metric: 'db.repeated_count', value: 7, limit: 5, severity: 'warning', statement: 'SELECT * FROM users WHERE id = $1' },
    ]);
    // Only the top statement known (a cost record read from attributes): allowed means not judged.
    expect(evaluateBudget(cost({ repeatedCount: 30, repeatedStatement: statements[0]!.fingerprint }), allowPrices)).toEqual([]);
  });
});

describe('costRecordFromAttributes', () => {
  it('reads the contract attributes, missing ones as zero', () => {
    expect(
      costRecordFromAttributes(
        {
          'cost.db.queries': 4,
          'cost.db.time_ms': 2.5,
          'cost.db.rows': 9n,
          'cost.db.repeated_count': 3,
          'cost.db.repeated_statement': 'SELECT ?',
          'cost.heap.delta_bytes': -5,
          'cost.heap.confidence': 'low',
        },
        12.5,
      ),
    ).toEqual({
      durationMs: 12.5,
      queries: 4,
      dbTimeMs: 2.5,
      rows: 9,
      repeatedCount: 3,
      repeatedStatement: 'SELECT ?',
      heapDeltaBytes: -5,
      heapConfidence: 'low',
      httpClientCalls: 0,
      httpClientUntimed: 0,
    });
  });
});

describe('enqueued jobs', () => {
  it('judges cost.jobs.enqueued against enqueuedJobs, and skips records that do not carry it', () => {
    const rule = { name: 'POST /signup', limits: { enqueuedJobs: 2 }, severity: 'warning', heapMinConfidence: 'medium', allowRepeated: [] } as const;
    const base = { durationMs: 1, queries: 0, dbTimeMs: 0, rows: 0, repeatedCount: 0, httpClientCalls: 0, httpClientUntimed: 0 };
    expect(evaluateBudget({ ...base, jobsEnqueued: 3 }, rule).map(formatViolation)).toEqual(['jobs.enqueued 3>2']);
    expect(evaluateBudget({ ...base, jobsEnqueued: 2 }, rule)).toEqual([]);
    expect(evaluateBudget(base, rule)).toEqual([]);
    expect(costRecordFromAttributes({ 'cost.db.queries': 0, 'cost.jobs.enqueued': 4 }, 1).jobsEnqueued).toBe(4);
  });
});
