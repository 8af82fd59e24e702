/**
 * The spans that are a queue library's own work to enqueue: those beneath an enqueue span (core's
 * enqueue-classifier: a PRODUCER span with `messaging.system`) within the same root, such as
 * BullMQ's Redis script under its `add` span or pg-boss's INSERT under its `send`. In-process, the
 * CostSpanProcessor leaves them out of the root's queries and calls and counts the enqueue as
 * `cost.jobs.enqueued`; derived here, the cost agrees.
 */
import { isEnqueueSpan, type SpanKindName } from '@request-budget/core';
import type { CollectedSpan } from '../otlp/otlp-model';

/** The spans of a trace that run beneath an enqueue span of their root (`roots`: attributeToRoots' answer). */
export function enqueueWorkOf(
  spans: readonly CollectedSpan[],
  roots: readonly (CollectedSpan | undefined)[],
  kindName: (span: CollectedSpan) => SpanKindName,
): Set<CollectedSpan> {
  const rootOf = new Map(spans.map((span, index) => [span, roots[index]]));
  const byId = new Map<string, CollectedSpan>();
  for (const span of spans) if (!byId.has(span.spanId)) byId.set(span.spanId, span);
  const under = new Map<CollectedSpan, boolean>();
  // Beneath an enqueue span: its parent (in the same root) is one, or its parent is beneath one.
  const isUnder = (span: CollectedSpan, root: CollectedSpan): boolean => {
    const chain = new Set<CollectedSpan>();
    let answer = false;
    for (let current = span; ;) {
      const known = under.get(current);
      if (known !== undefined) {
        answer = known;
        break;
      }
      chain.add(current);
      const parent = byId.get(current.parentSpanId);
      if (current === root || parent === undefined || rootOf.get(parent) !== root || chain.has(parent)) break;
      if (isEnqueueSpan(kindName(parent), parent.attributes)) {
        answer = true;
        break;
      }
      current = parent;
    }
    // Every span walked shares the answer: none of their parents was an enqueue span but the last's.
    for (const link of chain) under.set(link, answer);
    return answer;
  };
  const work = new Set<CollectedSpan>();
  for (const [span, root] of rootOf) if (root !== undefined && span !== root && isUnder(span, root)) work.add(span);
  return work;
}
