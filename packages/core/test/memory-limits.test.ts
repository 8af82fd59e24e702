import { describe, expect, it } from 'vitest';
import { parseBudgetText } from '../src/budget-file';
import type { ResolvedRule } from '../src/budget-rules';
import { BudgetRuleSet } from '../src/budget-rules';
import { costRecordFromAttributes, evaluateBudget, formatUnjudged, unjudgedLimits, type CostRecord } from '../src/evaluator';
import { judge } from '../src/judge';

const MiB = 1024 * 1024;

const rule = (limits: ResolvedRule['limits'], overrides: Partial<ResolvedRule> = {}): ResolvedRule => ({
  name: 'GET /report',
  limits,
  severity: 'warning',
  heapMinConfidence: 'medium',
  allowRepeated: [],
  ...overrides,
});

const cost = (overrides: Partial<CostRecord> = {}): CostRecord => ({
  durationMs: 10,
  queries: 1,
  dbTimeMs: 1,
  rows: 1,
  repeatedCount: 1,
  httpClientCalls: 0,
  httpClientUntimed: 0,
  ...overrides,
});

describe('allocatedBytes', () => {
  it('is judged on the larger of the request’s own allocation and its route’s estimate', () => {
    const limits = { allocatedBytes: 8 * MiB };
    // Own figure a lower bound cut by a collection: the route's estimate shows the breach.
    expect(evaluateBudget(cost({ allocatedBytes: 2 * MiB, allocatedEstimateBytes: 16 * MiB }), rule(limits))).toEqual([
      { metric: 'memory.allocated_bytes', value: 16 * MiB, limit: 8 * MiB, severity: 'warning' },
    ]);
    // An outlier request on a cheap route: its own figure shows it.
    expect(evaluateBudget(cost({ allocatedBytes: 9 * MiB, allocatedEstimateBytes: 1 * MiB }), rule(limits))).toEqual([
      { metric: 'memory.allocated_bytes', value: 9 * MiB, limit: 8 * MiB, severity: 'warning' },
    ]);
    // No estimate yet (a route's first requests): the own figure alone.
    expect(evaluateBudget(cost({ allocatedBytes: 9 * MiB }), rule(limits))).toHaveLength(1);
    expect(evaluateBudget(cost({ allocatedBytes: 8 * MiB, allocatedEstimateBytes: 8 * MiB }), rule(limits))).toEqual([]);
    expect(unjudgedLimits(cost({ allocatedBytes: 0 }), rule(limits))).toEqual([]);
  });

  it('is said not judged when memory attribution measured nothing', () => {
    expect(evaluateBudget(cost(), rule({ allocatedBytes: 1 }))).toEqual([]);
    expect(unjudgedLimits(cost(), rule({ allocatedBytes: 1 })).map(formatUnjudged)).toEqual([
      'memory.allocated_bytes: not measured (no cost.memory figure: memory attribution off, the route not measured yet, or no request-budget SDK in the service)',
    ]);
  });
});

describe('dbBytes', () => {
  it('is judged on cost.db.bytes, and said not judged when a driver did not report bytes', () => {
    expect(evaluateBudget(cost({ dbBytes: 300_001 }), rule({ dbBytes: 300_000 }))).toEqual([
      { metric: 'db.bytes', value: 300_001, limit: 300_000, severity: 'warning' },
    ]);
    expect(evaluateBudget(cost({ dbBytes: 300_000 }), rule({ dbBytes: 300_000 }))).toEqual([]);
    expect(unjudgedLimits(cost(), rule({ dbBytes: 300_000 })).map(formatUnjudged)).toEqual([
      'db.bytes: not measured (a query went through a driver that does not report result bytes)',
    ]);
  });
});

describe('heapDeltaBytes below its minimum confidence', () => {
  it('is never skipped without a word', () => {
    const limits = { heapDeltaBytes: MiB };
    expect(unjudgedLimits(cost({ heapDeltaBytes: 9 * MiB, heapConfidence: 'low', heapInFlight: 8 }), rule(limits)).map(formatUnjudged)).toEqual([
      'heap.delta_bytes: 8 requests in flight (heapMinConfidence medium; allocatedBytes holds under load)',
    ]);
    expect(
      unjudgedLimits(cost({ heapDeltaBytes: 9 * MiB, heapConfidence: 'medium', heapInFlight: 1 }), rule(limits, { heapMinConfidence: 'high' })).map(
        formatUnjudged,
      ),
    ).toEqual(['heap.delta_bytes: confidence medium below heapMinConfidence high']);
    // Trusted: judged, nothing unjudged.
    expect(unjudgedLimits(cost({ heapDeltaBytes: 9 * MiB, heapConfidence: 'high', heapInFlight: 1 }), rule(limits))).toEqual([]);
    // No heap limit: nothing to say.
    expect(unjudgedLimits(cost({ heapDeltaBytes: 9 * MiB, heapConfidence: 'low', heapInFlight: 8 }), rule({ queries: 1 }))).toEqual([]);
  });
});

describe('judge', () => {
  it('writes budget.unjudged beside the verdict, read from the cost attributes', () => {
    const budgets = parseBudgetText('version: 1\ndefaults:\n  heapDeltaBytes: 1MiB\n  allocatedBytes: 8 MiB\n  dbBytes: 512KiB\n', 'budgets.yaml');
    expect(budgets.defaults.limits).toEqual({ heapDeltaBytes: MiB, allocatedBytes: 8 * MiB, dbBytes: 512 * 1024 });
    const attributes = {
      'http.request.method': 'GET',
      'http.route': '/report',
      'cost.db.queries': 1,
      'cost.heap.delta_bytes': 20 * MiB,
      'cost.heap.in_flight': 3,
      'cost.heap.confidence': 'low',
      'cost.memory.allocated_bytes': 3 * MiB,
      'cost.memory.route_estimate_bytes': 16 * MiB,
      'cost.db.bytes': 524_289,
    };
    expect(costRecordFromAttributes(attributes, 5)).toMatchObject({
      heapInFlight: 3,
      allocatedBytes: 3 * MiB,
      allocatedEstimateBytes: 16 * MiB,
      dbBytes: 524_289,
    });
    const judgement = judge({ attributes, durationMs: 5 }, new BudgetRuleSet(budgets));
    expect(judgement.attributes).toEqual({
      'budget.rule': 'defaults',
      'budget.breached': true,
      'budget.violations': ['memory.allocated_bytes 16777216>8388608', 'db.bytes 524289>524288'],
      'budget.unjudged': ['heap.delta_bytes: 3 requests in flight (heapMinConfidence medium; allocatedBytes holds under load)'],
    });
    expect(judgement.unjudged).toEqual([
      { metric: 'heap.delta_bytes', reason: '3 requests in flight (heapMinConfidence medium; allocatedBytes holds under load)' },
    ]);
  });
});
