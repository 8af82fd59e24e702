import { describe, expect, it } from 'vitest';
import { BudgetRuleSet } from '../src/budget-rules';
import { parseBudgetObject } from '../src/budget-file';
import { isJudgeable, judge } from '../src/judge';

const rules = new BudgetRuleSet(
  parseBudgetObject({
    version: 1,
    defaults: { queries: 20 },
    routes: [
      { match: 'GET /users/:id', queries: 3, repeatedQueries: 2, severity: 'critical' },
      { match: 'GET /feed', repeatedQueries: 2, allowRepeated: ['SELECT * FROM flags*'] },
    ],
    jobs: [{ match: 'email.*', queries: 1 }],
  }),
);

const request = (route: string, cost: Record<string, unknown>) => ({ 'http.request.method': 'GET', 'http.route': route, 'cost.db.queries': 0, ...cost });

describe('judge', () => {
  it('writes the rule, the breach flag, the violations and one event per violation', () => {
    const judgement = judge(
      {
        attributes: request('/users/:id', { 'cost.db.queries': 5, 'cost.db.repeated_count': 4, 'cost.db.repeated_statement': 'SELECT ? FROM orders' }),
        durationMs: 12,
      },
      rules,
      { errorStatusOnCritical: true },
    );
    expect(judgement.label).toBe('GET /users/:id');
    expect(judgement.attributes).toEqual({
      'budget.rule': 'GET /users/:id',
      'budget.breached': true,
      'budget.violations': ['db.queries 5>3', 'db.repeated_count 4>2'],
    });
    expect(judgement.events).toEqual([
      { name: 'budget.breach', attributes: { metric: 'db.queries', value: 5, limit: 3, severity: 'critical' }, offsetNs: 0 },
      {
        name: 'budget.breach',
        attributes: { metric: 'db.repeated_count', value: 4, limit: 2, severity: 'critical', statement: 'SELECT ? FROM orders' },
        offsetNs: 1000,
      },
    ]);
    expect(judgement.errorStatusMessage).toBe('budget exceeded: db.queries 5>3, db.repeated_count 4>2');
    expect(judgement.reports({ service: 's', traceId: 't', spanId: 'p', timeMs: 1 }).map((r) => [r.route, r.rule, r.metric])).toEqual([
      ['GET /users/:id', 'GET /users/:id', 'db.queries'],
      ['GET /users/:id', 'GET /users/:id', 'db.repeated_count'],
    ]);
  });

  it('within budget: the rule and breached=false only', () => {
    const judgement = judge({ attributes: request('/users/:id', { 'cost.db.queries': 3 }), durationMs: 1 }, rules);
    expect([judgement.attributes, judgement.events, judgement.errorStatusMessage]).toEqual([
      { 'budget.rule': 'GET /users/:id', 'budget.breached': false },
      [],
      undefined,
    ]);
  });

  it('asks for every statement only when the rule allows repeats, and looks past the allowed one', () => {
    let asked = 0;
    const statements = () => {
      asked += 1;
      return [
        { fingerprint: 'SELECT * FROM flags WHERE k = ?', count: 9 },
        { fingerprint: 'SELECT * FROM posts WHERE id = ?', count: 3 },
      ];
    };
    const feed = judge({ attributes: request('/feed', { 'cost.db.queries': 12, 'cost.db.repeated_count': 9 }), durationMs: 1, statements }, rules);
    expect(feed.attributes['budget.violations']).toEqual(['db.repeated_count 3>2']);
    judge({ attributes: request('/users/:id', { 'cost.db.queries': 1 }), durationMs: 1, statements }, rules);
    expect(asked).toBe(1);
  });

  it('labels jobs and unrouted requests; normalises routes for matching only', () => {
    expect(
      judge({ attributes: { 'request_budget.job.name': 'email.send', 'cost.db.queries': 2 }, durationMs: 1 }, rules).attributes['budget.violations'],
    ).toEqual(['db.queries 2>1']);
    expect(judge({ attributes: { 'http.request.method': 'GET', 'cost.db.queries': 0 }, durationMs: 1 }, rules).label).toBe('GET (unrouted)');
    // A queue library's own consumer span names no job: it is judged and labelled by its queue.
    const consumer = judge({ attributes: { 'messaging.destination.name': 'email.bulk', 'cost.db.queries': 3 }, durationMs: 1 }, rules);
    expect([consumer.label, consumer.rule.name, consumer.attributes['budget.violations']]).toEqual(['job email.bulk', 'email.*', ['db.queries 3>1']]);
    const normalised = judge({ attributes: request('/users/{id}', { 'cost.db.queries': 4 }), durationMs: 1 }, rules, {
      normaliseRoute: (r) => r.replace('{id}', ':id'),
    });
    expect([normalised.rule.name, normalised.label]).toEqual(['GET /users/:id', 'GET /users/{id}']);
  });

  it('judges only roots with a cost record, not yet judged, and not measurements', () => {
    expect([
      isJudgeable({ 'cost.db.queries': 0 }),
      isJudgeable({}),
      isJudgeable({ 'cost.db.queries': 0, 'budget.rule': 'x' }),
      isJudgeable({ 'cost.db.queries': 0, 'request_budget.measurement': true }),
    ]).toEqual([true, false, false, false]);
  });
});
