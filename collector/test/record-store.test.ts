/**
 * What the trace window keeps of a span it forwarded as it came (record-store.ts): the facts
 * judging reads, exactly as read from the span held whole (span-facts.ts), its slot reused once its
 * trace is flushed, its references let go with it.
 */
import { describe, expect, it } from 'vitest';
import type { CollectedSpan } from '../src/otlp/otlp-model';
import { INTERNED_STRING_BYTES } from '../src/processor/interned-strings';
import { CHUNK_SLOTS, NO_RECORD, RECORD_SLOT_BYTES, RecordStore, STRING_BYTES } from '../src/processor/record-store';
import { factsOfSpan, SpanCostReader, type SpanFacts } from '../src/processor/span-facts';
import { decodedSpans } from './support/decoded-spans';
import { Kind, newSpanId, newTraceId } from './support/synthetic-trace';

/** Links `spans` as one trace's records; returns the head. */
function recordAll(store: RecordStore, costs: SpanCostReader, spans: readonly CollectedSpan[]): number {
  let head = NO_RECORD;
  let tail = NO_RECORD;
  for (const span of spans) {
    tail = store.add(span, costs, tail);
    if (head === NO_RECORD) head = tail;
  }
  return head;
}

/** Facts without the span they were read from (a record has none). */
const withoutSpan = (facts: SpanFacts): Omit<SpanFacts, 'span'> => {
  const { span: _span, ...rest } = facts;
  return rest;
};

describe('a span record', () => {
  it('gives back the facts read from the span held whole: ids, times, kind, flags, process and cost', () => {
    const parent = newSpanId();
    const spans = decodedSpans(newTraceId(), [
      // A query with rows and bytes; a query without; an outgoing call, timed and not; an enqueue of
      // three messages; a span of no cost without a parent; flags and times past 2^32 ns.
      {
        kind: Kind.CLIENT,
        parentSpanId: parent,
        startUs: 5_000_000,
        endUs: 5_000_123,
        attributes: {
          'db.system.name': 'postgresql',
          'db.query.text': 'SELECT * FROM t WHERE id = 7',
          'db.response.returned_rows': 3,
          'request_budget.db.response_bytes': 120,
        },
      },
      { kind: Kind.CLIENT, parentSpanId: parent, attributes: { 'db.system': 'mysql', 'db.statement': 'SELECT 1' } },
      {
        kind: Kind.CLIENT,
        parentSpanId: parent,
        attributes: { 'http.request.method': 'GET', 'url.full': 'http://inventory:8080/stock', 'request_budget.http_client.timed': true },
      },
      { kind: Kind.CLIENT, parentSpanId: parent, attributes: { 'http.request.method': 'POST', 'request_budget.http_client.timed': false } },
      { kind: Kind.PRODUCER, parentSpanId: parent, attributes: { 'messaging.system': 'rabbitmq', 'messaging.batch.message_count': 3 } },
      { kind: Kind.INTERNAL, parentSpanId: undefined, flags: 0x301 },
      // A query by core's classifier (a DB system attribute, even empty) and an HTTP call by the
      // nesting rule (no DB system name to compare): the record keeps both.
      { kind: Kind.CLIENT, parentSpanId: parent, attributes: { 'db.system.name': '', 'db.query.text': 'SELECT 2', 'http.request.method': 'GET' } },
    ]);
    const costs = new SpanCostReader();
    const store = new RecordStore();
    const facts = store.take(recordAll(store, costs, spans));
    const whole = spans.map((span) => withoutSpan(factsOfSpan(span, new SpanCostReader())));
    expect(facts.map(withoutSpan)).toEqual(whole);
    // The cases the record encodes, as read: so the comparison above covers each.
    expect(whole.map((fact) => fact.cost?.contribution)).toEqual([
      { type: 'db', statement: 'SELECT * FROM t WHERE id = ?', rows: 3, bytes: 120 },
      { type: 'db', statement: 'SELECT ?', rows: undefined, bytes: undefined },
      { type: 'http_client', timed: true },
      { type: 'http_client', timed: false },
      undefined,
      undefined,
      { type: 'db', statement: 'SELECT ?', rows: undefined, bytes: undefined },
    ]);
    expect(whole[6]!.cost?.identity).toEqual({ type: 'http_client', method: 'GET', url: undefined });
    expect(whole[4]!.cost?.enqueued).toBe(3);
    expect(whole[5]).toMatchObject({ hasParent: false, parentSpanId: '', flags: 0x301, cost: undefined });
    expect(whole[0]!.endHi * 2 ** 32 + whole[0]!.endLo - (whole[0]!.startHi * 2 ** 32 + whole[0]!.startLo)).toBe(123_000);
    expect(store.count).toBe(0);
  });

  it("keeps a query's fingerprint and database system, not its statement text", () => {
    const spans = decodedSpans(
      newTraceId(),
      [41, 42].map((id) => ({ attributes: { 'db.system.name': 'postgresql', 'db.query.text': `SELECT * FROM orders WHERE id = ${id}` } })),
    );
    const store = new RecordStore();
    const facts = store.take(recordAll(store, new SpanCostReader(), spans));
    for (const fact of facts) {
      expect(fact.cost).toEqual({
        contribution: { type: 'db', statement: 'SELECT * FROM orders WHERE id = ?', rows: undefined, bytes: undefined },
        fingerprint: 'SELECT * FROM orders WHERE id = ?',
        identity: { type: 'db', system: 'postgresql' },
        enqueued: undefined,
      });
    }
  });
});

describe('the record store', () => {
  it('is charged the strings its records refer to beside their slots, a shared one once, and gives them back with the last record', () => {
    const url = 'http://inventory:8080/stock/42';
    const call = { attributes: { 'http.request.method': 'GET', 'url.full': url } };
    const query = { attributes: { 'db.system.name': 'postgresql', 'db.query.text': 'SELECT 1' } };
    const first = decodedSpans(newTraceId(), [call, query]);
    const second = decodedSpans(newTraceId(), [query]);
    const store = new RecordStore();
    const costs = new SpanCostReader();
    const firstHead = recordAll(store, costs, first);
    const secondHead = recordAll(store, costs, second);
    const processKey = first[0]!.origin.resource.processKey;
    expect(second[0]!.origin.resource.processKey).toBe(processKey);
    // Shared, each once (the process key, the call's method, the query's fingerprint and database
    // system, though two records refer to the last two), and the call's own URL.
    const shared = (texts: string[]) => texts.reduce((sum, text) => sum + INTERNED_STRING_BYTES + text.length, 0);
    const chunk = CHUNK_SLOTS * RECORD_SLOT_BYTES;
    expect(store.bytes).toBe(chunk + shared([processKey, 'GET', 'SELECT ?', 'postgresql']) + STRING_BYTES + url.length);
    store.take(firstHead);
    // The second trace's query still refers to its process key, fingerprint and database system.
    expect(store.bytes).toBe(chunk + shared([processKey, 'SELECT ?', 'postgresql']));
    expect(store.take(secondHead).map((facts) => [facts.processKey, facts.cost?.fingerprint])).toEqual([[processKey, 'SELECT ?']]);
    expect(store.bytes).toBe(chunk);
  });

  it('reuses the slots of a flushed trace, links each trace in the order its spans came, and grows by chunks', () => {
    const costs = new SpanCostReader();
    const store = new RecordStore();
    // No chunk until the first record.
    expect(store.bytes).toBe(0);
    const chunkBytes = CHUNK_SLOTS * RECORD_SLOT_BYTES;
    // Two traces interleaved: their records share the chunk, each list in its own order.
    const first = decodedSpans(
      newTraceId(),
      Array.from({ length: 3 }, () => ({})),
    );
    const second = decodedSpans(
      newTraceId(),
      Array.from({ length: 2 }, () => ({})),
    );
    let firstHead = NO_RECORD;
    let firstTail = NO_RECORD;
    let secondHead = NO_RECORD;
    let secondTail = NO_RECORD;
    for (let index = 0; index < 3; index += 1) {
      firstTail = store.add(first[index]!, costs, firstTail);
      if (firstHead === NO_RECORD) firstHead = firstTail;
      if (index < 2) {
        secondTail = store.add(second[index]!, costs, secondTail);
        if (secondHead === NO_RECORD) secondHead = secondTail;
      }
    }
    expect([firstHead, secondHead, firstTail]).toEqual([0, 1, 4]);
    // Every record refers to its process key: one string, charged once.
    const processKey = first[0]!.origin.resource.processKey;
    expect(new Set([...first, ...second].map((span) => span.origin.resource.processKey))).toEqual(new Set([processKey]));
    const processKeyBytes = INTERNED_STRING_BYTES + processKey.length;
    expect(store.bytes).toBe(chunkBytes + processKeyBytes);
    const idsOf = (spans: CollectedSpan[]) => spans.map((span) => factsOfSpan(span, costs).spanId);
    expect(store.take(firstHead).map((fact) => fact.spanId)).toEqual(idsOf(first));
    expect(store.count).toBe(2);
    // The three freed slots come back (the last freed first) before new ones are used.
    const third = decodedSpans(
      newTraceId(),
      Array.from({ length: 4 }, () => ({})),
    );
    const slots: number[] = [];
    let tail = NO_RECORD;
    for (const span of third) slots.push((tail = store.add(span, costs, tail)));
    expect(slots).toEqual([4, 2, 0, 5]);
    expect(store.take(slots[0]!).map((fact) => fact.spanId)).toEqual(idsOf(third));
    expect(store.take(secondHead).map((fact) => fact.spanId)).toEqual(idsOf(second));

    // Past one chunk: a second is added, nothing moves; once empty, the store is one chunk again.
    const many = decodedSpans(
      newTraceId(),
      Array.from({ length: CHUNK_SLOTS + 1 }, () => ({})),
    );
    const head = recordAll(store, costs, many);
    expect(store.bytes).toBe(2 * chunkBytes + processKeyBytes);
    expect(store.count).toBe(CHUNK_SLOTS + 1);
    expect(store.take(head).map((fact) => fact.spanId)).toEqual(idsOf(many));
    expect(store.count).toBe(0);
    expect(store.bytes).toBe(chunkBytes);
  });
});
