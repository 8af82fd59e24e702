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
import { startsAfterEnd, type SpanFacts } from './span-facts';
import { SpanFlags, SpanKind } from '../otlp/otlp-schema';

// A span's root index, or: none, not yet worked out, on the chain being worked out.
const NO_ROOT = -1;
const UNRESOLVED = -2;
const ON_CHAIN = -3;

/** Each span's root (undefined: none), by its index in `spans`. */
export function attributeToRoots(spans: readonly SpanFacts[]): (SpanFacts | undefined)[] {
  return rootsOf(spans, rootIndexes(spans));
}

/** `rootIndexes`' answer as spans. */
export function rootsOf(spans: readonly SpanFacts[], rootIndex: Int32Array): (SpanFacts | undefined)[] {
  const roots: (SpanFacts | undefined)[] = new Array(spans.length);
  for (let index = 0; index < spans.length; index += 1) roots[index] = rootIndex[index] >= 0 ? spans[rootIndex[index]] : undefined;
  return roots;
}

/** Each span's root as its index in `spans` (-1: none). */
export function rootIndexes(spans: readonly SpanFacts[]): Int32Array {
  const count = spans.length;
  // The first span of each id: a second copy is no one's parent.
  const indexById = new Map<string, number>();
  for (let index = 0; index < count; index += 1) {
    const id = spans[index].spanId;
    if (!indexById.has(id)) indexById.set(id, index);
  }
  const rootIndex = new Int32Array(count).fill(UNRESOLVED);
  // Reused from span to span: most chains are one or two spans long.
  const chain: number[] = [];
  for (let index = 0; index < count; index += 1) {
    if (rootIndex[index] !== UNRESOLVED) continue;
    // A second copy of a span (a sender's retry) belongs to no root: children find their parent
    // by id, so the first copy already counts them, and a root must not be judged twice.
    if (indexById.get(spans[index].spanId) !== index) {
      rootIndex[index] = NO_ROOT;
      continue;
    }
    // Walk up to a span already resolved (or the top), iteratively: chains can be long, and a
    // malformed trace can loop (a span met twice, marked on the chain, ends the walk).
    chain.length = 0;
    for (let current = index; current >= 0 && rootIndex[current] === UNRESOLVED; current = localParent(spans, indexById, current)) {
      chain.push(current);
      rootIndex[current] = ON_CHAIN;
      if (isOwnRoot(spans[current])) break;
    }
    for (let link = chain.length - 1; link >= 0; link -= 1) {
      const current = chain[link];
      const span = spans[current];
      if (isOwnRoot(span)) {
        rootIndex[current] = current;
        continue;
      }
      const parent = localParent(spans, indexById, current);
      const parentRoot = parent < 0 ? NO_ROOT : rootIndex[parent];
      if (parentRoot >= 0 && !startsAfterEnd(span, spans[parentRoot])) rootIndex[current] = parentRoot;
      else if (span.kind === SpanKind.SERVER && !parentIsLocalButMissing(span, indexById)) rootIndex[current] = current;
      else rootIndex[current] = NO_ROOT;
    }
  }
  return rootIndex;
}

/** The index of the span's parent when it is in the same process, else -1. */
function localParent(spans: readonly SpanFacts[], indexById: ReadonlyMap<string, number>, index: number): number {
  const span = spans[index];
  if (!span.hasParent) return -1;
  const { flags } = span;
  const remoteKnown = (flags & SpanFlags.CONTEXT_HAS_IS_REMOTE) !== 0;
  if (remoteKnown && (flags & SpanFlags.CONTEXT_IS_REMOTE) !== 0) return -1;
  const parentIndex = indexById.get(span.parentSpanId);
  if (parentIndex === undefined || parentIndex === index) return -1;
  const parent = spans[parentIndex];
  if (parent.processKey !== span.processKey) return -1;
  // Without flags: a client's context reaches a server over the wire, so in-process that parent
  // is remote — even when the server is the same process, or a replica whose resource reads the same.
  return !remoteKnown && span.kind === SpanKind.SERVER && parent.kind === SpanKind.CLIENT ? -1 : parentIndex;
}

function parentIsLocalButMissing(span: SpanFacts, indexById: ReadonlyMap<string, number>): boolean {
  const { flags } = span;
  return span.hasParent && (flags & SpanFlags.CONTEXT_HAS_IS_REMOTE) !== 0 && (flags & SpanFlags.CONTEXT_IS_REMOTE) === 0 && !indexById.has(span.parentSpanId);
}

/** A root of its own wherever it starts: a marked root (a job, a measurement) or a CONSUMER span. */
export function isOwnRoot(span: SpanFacts): boolean {
  return span.markedRoot || span.kind === SpanKind.CONSUMER;
}

/**
 * A span that may be a local root: SERVER, CONSUMER, or marked (`request_budget.root`). Any other
 * span never is one (above): it is forwarded as soon as it arrives, and the bytes of the two are
 * kept apart from the start (span-decode.ts).
 */
export function mayBeRoot(span: { readonly kind: number; readonly markedRoot: boolean }): boolean {
  return span.kind === SpanKind.SERVER || span.kind === SpanKind.CONSUMER || span.markedRoot;
}
