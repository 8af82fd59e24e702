/**
 * The spans that are a queue library's own work to enqueue: those beneath an enqueue span (core's
 * enqueue-classifier: a PRODUCER span with `messaging.system`) within the same root, such as
 * BullMQ's Redis script under its `add` span or pg-boss's INSERT under its `send`. In-process, the
 * CostSpanProcessor leaves them out of the root's queries and calls and counts the enqueue as
 * `cost.jobs.enqueued`; derived here, the cost agrees.
 */
import type { SpanFacts } from './span-facts';

/** The spans of a trace that run beneath an enqueue span of their root (`roots`: attributeToRoots' answer). */
export function enqueueWorkOf(spans: readonly SpanFacts[], roots: readonly (SpanFacts | undefined)[]): Set<SpanFacts> {
  const rootOf = new Map(spans.map((span, index) => [span, roots[index]]));
  const byId = new Map<string, SpanFacts>();
  for (const span of spans) if (!byId.has(span.spanId)) byId.set(span.spanId, span);
  const under = new Map<SpanFacts, boolean>();
  // Beneath an enqueue span: its parent (in the same root) is one, or its parent is beneath one.
  const isUnder = (span: SpanFacts, root: SpanFacts): boolean => {
    const chain = new Set<SpanFacts>();
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
      if (parent.cost?.enqueued !== undefined) {
        answer = true;
        break;
      }
      current = parent;
    }
    // Every span walked shares the answer: none of their parents was an enqueue span but the last's.
    for (const link of chain) under.set(link, answer);
    return answer;
  };
  const work = new Set<SpanFacts>();
  for (const [span, root] of rootOf) if (root !== undefined && span !== root && isUnder(span, root)) work.add(span);
  return work;
}
