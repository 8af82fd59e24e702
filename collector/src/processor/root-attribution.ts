/**
 * Which local root (request or job span) each span of a trace belongs to — the rule the in-process
 * CostSpanProcessor applies as spans start, applied here to a trace's spans after the fact:
 *
 * - a span marked `request_budget.root=true` (a background job, a measurement) or of kind CONSUMER
 *   (a message a consumer received, processed for its queue) is a root of its own;
 * - a span whose parent is in the same process (same resource) and attributed to a root that had
 *   not ended when the span started belongs to that root;
 * - otherwise a SERVER span is a root of its own (its parent is remote, or unattributed);
 * - otherwise the span belongs to no root; so does a second copy of a span id (sent twice).
 *
 * "Same process" is "same resource attributes": an SDK sends one resource per process. Where a
 * span's flags say whether its parent is remote (OTLP 1.1+), that is believed; without them, a
 * SERVER span's CLIENT parent is remote; a parent that never arrived leaves its children
 * unattributed (their local root cannot be known).
 */
import type { CollectedSpan } from '../otlp/otlp-model';
import { SpanFlags, SpanKind } from '../otlp/otlp-schema';

/** Each span's root (undefined: none), for every span of `spans`. */
export function attributeToRoots(spans: readonly CollectedSpan[]): Map<CollectedSpan, CollectedSpan | undefined> {
  const byId = new Map<string, CollectedSpan>();
  for (const span of spans) if (!byId.has(span.spanId)) byId.set(span.spanId, span);
  const rootOf = new Map<CollectedSpan, CollectedSpan | undefined>();

  const localParent = (span: CollectedSpan): CollectedSpan | undefined => {
    if (span.parentSpanId === '') return undefined;
    const { flags } = span;
    const remoteKnown = (flags & SpanFlags.CONTEXT_HAS_IS_REMOTE) !== 0;
    if (remoteKnown && (flags & SpanFlags.CONTEXT_IS_REMOTE) !== 0) return undefined;
    const parent = byId.get(span.parentSpanId);
    if (parent === undefined || parent === span || parent.origin.resource.processKey !== span.origin.resource.processKey) return undefined;
    // Without flags: a client's context reaches a server over the wire, so in-process that parent
    // is remote — even when the server is the same process, or a replica whose resource reads the same.
    return !remoteKnown && span.kind === SpanKind.SERVER && parent.kind === SpanKind.CLIENT ? undefined : parent;
  };
  const parentIsLocalButMissing = (span: CollectedSpan): boolean => {
    const { flags } = span;
    return (
      span.parentSpanId !== '' && (flags & SpanFlags.CONTEXT_HAS_IS_REMOTE) !== 0 && (flags & SpanFlags.CONTEXT_IS_REMOTE) === 0 && !byId.has(span.parentSpanId)
    );
  };

  // Reused from span to span: most chains are one or two spans long.
  const chain: CollectedSpan[] = [];
  const onChain = new Set<CollectedSpan>();
  for (const span of spans) {
    if (rootOf.has(span)) continue;
    // A second copy of a span (a sender's retry) belongs to no root: children find their parent
    // by id, so the first copy already counts them, and a root must not be judged twice.
    if (byId.get(span.spanId) !== span) {
      rootOf.set(span, undefined);
      continue;
    }
    // Walk up to a span already resolved (or the top), iteratively: chains can be long, and a
    // malformed trace can loop.
    chain.length = 0;
    onChain.clear();
    for (
      let current: CollectedSpan | undefined = span;
      current !== undefined && !rootOf.has(current) && !onChain.has(current);
      current = localParent(current)
    ) {
      chain.push(current);
      onChain.add(current);
      if (isOwnRoot(current)) break;
    }
    for (let index = chain.length - 1; index >= 0; index -= 1) {
      const current = chain[index];
      if (isOwnRoot(current)) {
        rootOf.set(current, current);
        continue;
      }
      const parent = localParent(current);
      const parentRoot = parent === undefined ? undefined : rootOf.get(parent);
      if (parentRoot !== undefined && current.startNs <= parentRoot.endNs) rootOf.set(current, parentRoot);
      else if (current.kind === SpanKind.SERVER && !parentIsLocalButMissing(current)) rootOf.set(current, current);
      else rootOf.set(current, undefined);
    }
  }
  return rootOf;
}

/** A root of its own wherever it starts: a marked root (a job, a measurement) or a CONSUMER span. */
export function isOwnRoot(span: CollectedSpan): boolean {
  return span.markedRoot || span.kind === SpanKind.CONSUMER;
}
