/**
 * What judging reads of each span of a trace: where the span is in it (ids, parent, kind, flags,
 * process, times) and what it adds to its root's cost. A span that may be a root is held whole
 * until its trace is judged, and its facts are read then; any other span is forwarded as soon as
 * it arrives, and its facts, read then, are all that is kept of it (record-store.ts).
 */
import {
  FingerprintCache,
  classifySpan,
  enqueuedMessages,
  operationIdentity,
  type AttributeMap,
  type CostContribution,
  type OperationIdentity,
  type SpanKindName,
} from '@request-budget/core';
import type { CollectedSpan } from '../otlp/otlp-model';
import { SpanKind } from '../otlp/otlp-schema';
import { StringPool } from '../otlp/string-pool';

export interface SpanFacts {
  /** The span id as a key: equal for equal ids (idKey; not hex, which would cost formatting). */
  readonly spanId: string;
  /** The parent id as a key; '' without a parent. */
  readonly parentSpanId: string;
  readonly hasParent: boolean;
  /** Span.flags (the parent-is-remote bits). */
  readonly flags: number;
  readonly kind: number;
  readonly markedRoot: boolean;
  /** Equal for the spans of one process (one resource). */
  readonly processKey: string;
  /** Start and end in nanoseconds, as 32-bit halves: exact, and no bigint per span. */
  readonly startHi: number;
  readonly startLo: number;
  readonly endHi: number;
  readonly endLo: number;
  /** What the span adds to its root's cost; undefined when nothing. */
  readonly cost: SpanCost | undefined;
  /** The span itself when it was held whole: only such a span can be a root, judged and written on. */
  readonly span: CollectedSpan | undefined;
}

/** A span id (its 32-bit halves) as a key: four UTF-16 code units. */
export function idKey(hi: number, lo: number): string {
  return String.fromCharCode(hi >>> 16, hi & 0xffff, lo >>> 16, lo & 0xffff);
}

/** A span id in lowercase hex (16 digits) as a key ('' stays ''). */
export function idKeyOfHex(hex: string): string {
  if (hex === '') return '';
  return String.fromCharCode(
    Number.parseInt(hex.slice(0, 4), 16),
    Number.parseInt(hex.slice(4, 8), 16),
    Number.parseInt(hex.slice(8, 12), 16),
    Number.parseInt(hex.slice(12, 16), 16),
  );
}

/** Whether `a` ended after `b` ended. */
export function endsAfter(a: SpanFacts, b: SpanFacts): boolean {
  return a.endHi > b.endHi || (a.endHi === b.endHi && a.endLo > b.endLo);
}

/** Whether `a` started after `b` ended. */
export function startsAfterEnd(a: SpanFacts, b: SpanFacts): boolean {
  return a.startHi > b.endHi || (a.startHi === b.endHi && a.startLo > b.endLo);
}

/** The span's duration in milliseconds (0 when it ends before it starts). */
export function durationMsOf(span: SpanFacts): number {
  const ns = (span.endHi - span.startHi) * 2 ** 32 + (span.endLo - span.startLo);
  return ns > 0 ? ns / 1e6 : 0;
}

/** What a span adds to its root's cost, from its kind, name and attributes (core's classifiers). */
export interface SpanCost {
  /** A query or an outgoing call. */
  readonly contribution: CostContribution | undefined;
  /** A query's statement fingerprint. */
  readonly fingerprint: string | undefined;
  /** The operation it reports (for spans that report one operation twice: nested-operations). */
  readonly identity: OperationIdentity | undefined;
  /** Messages it put on a queue (an enqueue span). */
  readonly enqueued: number | undefined;
}

const KIND_NAMES: Record<number, SpanKindName> = {
  [SpanKind.INTERNAL]: 'internal',
  [SpanKind.SERVER]: 'server',
  [SpanKind.CLIENT]: 'client',
  [SpanKind.PRODUCER]: 'producer',
  [SpanKind.CONSUMER]: 'consumer',
};

export function kindName(kind: number): SpanKindName {
  return KIND_NAMES[kind] ?? 'internal';
}

/**
 * Reads what spans add to a cost. A record keeps its query's fingerprint, not its statement, and
 * the strings records keep (fingerprints, database systems, HTTP methods) are shared through one
 * pool: a trace window holds a few hundred thousand records.
 */
export class SpanCostReader {
  readonly fingerprints = new FingerprintCache();
  private readonly strings = new StringPool(4096);

  costOf(kind: number, name: string, attributes: AttributeMap): SpanCost | undefined {
    const kindText = kindName(kind);
    const contribution = classifySpan(kindText, name, attributes);
    const identity = operationIdentity(kindText, name, attributes);
    const enqueued = enqueuedMessages(kindText, attributes);
    if (contribution === undefined && identity === undefined && enqueued === undefined) return undefined;
    const fingerprint = contribution?.type === 'db' ? this.strings.shared(this.fingerprints.get(contribution.statement)) : undefined;
    return {
      // The statement is let go: the fingerprint is what the tally counts.
      contribution: contribution?.type === 'db' ? { type: 'db', statement: fingerprint!, rows: contribution.rows, bytes: contribution.bytes } : contribution,
      fingerprint,
      identity:
        identity?.type === 'db'
          ? { type: 'db', system: this.strings.shared(identity.system) }
          : identity?.type === 'http_client'
            ? { type: 'http_client', method: this.strings.shared(identity.method), url: identity.url }
            : identity,
      enqueued,
    };
  }
}

const LOW_32 = 0xffffffffn;

/** The facts of a span held whole, read from it (its attributes are read from its bytes now). */
export function factsOfSpan(span: CollectedSpan, costs: SpanCostReader): SpanFacts {
  const { startNs, endNs } = span;
  return {
    spanId: idKeyOfHex(span.spanId),
    parentSpanId: idKeyOfHex(span.parentSpanId),
    hasParent: span.hasParent,
    flags: span.flags,
    kind: span.kind,
    markedRoot: span.markedRoot,
    processKey: span.origin.resource.processKey,
    startHi: Number(startNs >> 32n),
    startLo: Number(startNs & LOW_32),
    endHi: Number(endNs >> 32n),
    endLo: Number(endNs & LOW_32),
    cost: costs.costOf(span.kind, span.name, span.attributes),
    span,
  };
}
