import { describe, expect, it } from 'vitest';
import * as contract from '../src/attributes';
import { BudgetRuleSet } from '../src/budget-rules';
import { parseBudgetObject } from '../src/budget-file';
import { CONTRACT_ATTRIBUTES } from '../src/contract-attributes';
import { CostTally } from '../src/cost-tally';
import { enqueuedMessages, isEnqueueSpan } from '../src/enqueue-classifier';
import { costRecordFromAttributes } from '../src/evaluator';
import { FingerprintCache } from '../src/fingerprint';
import { isJudgeable, judge } from '../src/judge';
import { operationIdentity } from '../src/nested-operations';
import { routeOf } from '../src/root-route';
import { classifySpan, type SpanKindName } from '../src/span-classifier';

const KINDS: SpanKindName[] = ['internal', 'server', 'client', 'producer', 'consumer'];
const rules = new BudgetRuleSet(
  parseBudgetObject({
    version: 1,
    defaults: {
      queries: 1,
      dbTimeMs: 1,
      rows: 1,
      repeatedQueries: 1,
      heapDeltaBytes: 1,
      allocatedBytes: 1,
      dbBytes: 1,
      durationMs: 1,
      httpClientCalls: 1,
      untimedHttpCalls: 0,
      enqueuedJobs: 0,
    },
    routes: [{ match: 'GET /x', queries: 1 }],
    jobs: [{ match: '*', queries: 1 }],
  }),
);

/** Values a span may carry for any name: the branches a reader takes depend on their types. */
const FILLS: ReadonlyArray<(key: string) => unknown> = [
  () => 'postgresql',
  () => 'GET',
  () => 7,
  () => 7n,
  () => true,
  () => false,
  () => '',
  (key) => (key === contract.BUDGET_RULE ? undefined : key.startsWith('cost.') ? 3 : 'x'),
  // Without a database system: an HTTP call, a message.
  (key) => (key.startsWith('db.') ? undefined : key === contract.HTTP_CLIENT_TIMED ? true : 'GET'),
  (key) => (key.startsWith('db.') || key.startsWith('http.') ? undefined : key === contract.MESSAGING_BATCH_MESSAGE_COUNT ? 3 : 'rabbitmq'),
];

/**
 * Attributes that answer every name with `fill` but `missing` (to follow the `??` fallbacks),
 * recording each name asked for.
 */
function recording(asked: Set<string>, fill: (key: string) => unknown, missing?: string): Record<string, unknown> {
  return new Proxy(
    {},
    {
      get: (_target, key) => {
        if (typeof key !== 'string') return undefined;
        asked.add(key);
        return key === missing ? undefined : fill(key);
      },
      has: (_target, key) => {
        if (typeof key === 'string') asked.add(key);
        return key !== missing;
      },
    },
  );
}

/** Everything in core that reads a span's attributes, run on `attributes`. */
function readAll(attributes: Record<string, unknown>): void {
  for (const kind of KINDS) {
    for (const name of ['pg.query:SELECT', 'connect', 'GET']) {
      classifySpan(kind, name, attributes);
      operationIdentity(kind, name, attributes);
    }
    isEnqueueSpan(kind, attributes);
    enqueuedMessages(kind, attributes);
  }
  routeOf(attributes);
  isJudgeable(attributes);
  costRecordFromAttributes(attributes, 5);
  try {
    judge({ attributes, durationMs: 5 }, rules, { errorStatusOnCritical: true });
  } catch {
    // A fill the judgement refuses still told which names it asked for.
  }
}

describe('CONTRACT_ATTRIBUTES', () => {
  it('holds every name of the attribute contract', () => {
    expect(CONTRACT_ATTRIBUTES.has('db.query.text')).toBe(true);
    expect(CONTRACT_ATTRIBUTES.has('url.full')).toBe(true);
    expect(CONTRACT_ATTRIBUTES.has('cost.db.queries')).toBe(true);
    expect(CONTRACT_ATTRIBUTES.has('budget.violations')).toBe(true);
    expect(CONTRACT_ATTRIBUTES.has('server.address')).toBe(false);
    for (const value of Object.values(contract)) if (typeof value === 'string') expect(CONTRACT_ATTRIBUTES.has(value)).toBe(true);
  });

  it('holds every name the classifiers, the route and the judgement read, whatever the span carries', () => {
    const asked = new Set<string>();
    for (const fill of FILLS) {
      readAll(recording(asked, fill));
      readAll(recording(asked, () => undefined));
      for (const missing of CONTRACT_ATTRIBUTES) readAll(recording(asked, fill, missing));
    }
    // The readers were exercised: names from each of them were asked for.
    for (const name of [
      'db.system.name',
      'db.system',
      'db.query.text',
      'db.statement',
      'url.full',
      'http.url',
      'messaging.batch.message_count',
      'http.route',
      'request_budget.job.name',
      'cost.db.queries',
      'cost.memory.allocated_bytes',
      'request_budget.http_client.timed',
    ])
      expect(asked).toContain(name);
    expect([...asked].filter((name) => !CONTRACT_ATTRIBUTES.has(name))).toEqual([]);
  });

  it('holds every name a cost record or a judgement writes', () => {
    const tally = new CostTally(new FingerprintCache());
    tally.add({ type: 'db', statement: 'SELECT 1', rows: 2, bytes: 10 }, 1.5);
    tally.add({ type: 'db', statement: 'SELECT 1', rows: 2, bytes: 10 }, 1.5);
    tally.add({ type: 'http_client', timed: false }, 2);
    tally.addEnqueued(2);
    const written = Object.keys(tally.toAttributes());
    const judgement = judge({ attributes: { 'http.request.method': 'GET', 'http.route': '/x', ...tally.toAttributes() }, durationMs: 5 }, rules, {});
    written.push(...Object.keys(judgement.attributes));
    expect(written).toContain('budget.violations');
    expect(written).toContain('cost.db.repeated_statement');
    expect(written.filter((name) => !CONTRACT_ATTRIBUTES.has(name))).toEqual([]);
  });
});
