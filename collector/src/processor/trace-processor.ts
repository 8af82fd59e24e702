/**
 * What happens to one trace's spans when its window closes: each local root without a cost record
 * gets one derived from its own descendants (core's classifySpan, enqueue-classifier and CostTally,
 * as in-process), and each root not yet judged is judged against the budget file (core's BudgetRuleSet and
 * evaluateBudget) and marked exactly as the in-process BudgetSpanProcessor marks it:
 * `budget.rule`, `budget.breached`, `budget.violations` and one `budget.breach` event per
 * violation, a microsecond apart from the span's end.
 *
 * Out of process there is no heap or GC data: the `cost.heap.*` and `cost.gc.*` attributes are
 * not written (and heap limits are never judged: without a confidence they count as `low`).
 * Roots that already carry a cost record (from the Node.js SDK) keep it untouched.
 */
import {
  COST_ATTRIBUTE_TYPES,
  COST_DB_QUERIES,
  CostTally,
  isJudgeable,
  judge,
  outerDuplicateSpanIds,
  type BreachReport,
  type BudgetRuleSet,
  type OperationIdentity,
} from '@request-budget/core';
import { plainToAnyValue, type CollectedSpan, type NumberType, type WireKeyValue } from '../otlp/otlp-model';
import { SpanEdits } from '../otlp/span-edit';
import { StatusCode } from '../otlp/otlp-schema';
import { enqueueWorkOf } from './enqueue-work';
import { rootIndexes, rootsOf } from './root-attribution';
import { durationMsOf, endsAfter, factsOfSpan, SpanCostReader, type SpanFacts } from './span-facts';

// The markers live with the attribute contract; re-exported here for existing imports.
export { JOB_NAME_ATTRIBUTE, MEASUREMENT_ATTRIBUTE } from '@request-budget/core';

const NOTHING: ReadonlySet<SpanFacts> = new Set();
const MAX_ROUTES_REMEMBERED = 1000;

export interface TraceProcessorOptions {
  /** Budget rules; without them costs are derived and nothing is judged. */
  readonly rules?: BudgetRuleSet;
  /** Set span status ERROR when a critical limit is exceeded. @default false */
  readonly errorStatusOnCritical?: boolean;
}

/** What processing one trace did. */
export interface TraceOutcome {
  /** Local roots found. */
  readonly roots: number;
  /** Roots whose cost record was derived here. */
  readonly derived: number;
  /** Roots judged here. */
  readonly judged: number;
  /** One report per violation, for the alert sinks and metrics. */
  readonly breaches: BreachReport[];
}

/** A root of the trace being processed: its span, what its cost adds up to, what is written on it. */
interface RootWork {
  readonly span: CollectedSpan;
  /** Undefined for a root that came with its cost record. */
  readonly tally: CostTally | undefined;
  edits: SpanEdits | undefined;
}

function editsOf(work: RootWork): SpanEdits {
  return (work.edits ??= new SpanEdits());
}

const identityOf = (span: SpanFacts): OperationIdentity | undefined => span.cost?.identity;
const isEnqueueSpan = (span: SpanFacts): boolean => span.cost?.enqueued !== undefined;

/** Writes a tally's attributes onto a root as the tally names them (one, reused: no object per root). */
class AttributeWriter {
  private span: CollectedSpan | undefined;
  private edits: SpanEdits | undefined;

  on(span: CollectedSpan, edits: SpanEdits): this {
    this.span = span;
    this.edits = edits;
    return this;
  }

  /** Lets go of the root written on last (it must not outlive its trace here). */
  off(): void {
    this.span = undefined;
    this.edits = undefined;
  }

  setAttribute(key: string, value: string | number): void {
    setAttribute(this.span!, this.edits!, key, value, numberTypeOf(key));
  }
}

export class TraceProcessor {
  private readonly rules: BudgetRuleSet | undefined;
  private readonly errorStatusOnCritical: boolean;
  /** Reads what a span adds to a cost: for the spans held whole here, and for the trace window's records. */
  readonly costs = new SpanCostReader();
  private readonly writer = new AttributeWriter();
  // A service has a few route templates; each is normalised once (bounded: cleared when full).
  private readonly routes = new Map<string, string>();
  private readonly normalisedRoute = (route: string): string => {
    let normalised = this.routes.get(route);
    if (normalised === undefined) {
      if (this.routes.size >= MAX_ROUTES_REMEMBERED) this.routes.clear();
      this.routes.set(route, (normalised = normaliseRouteTemplate(route)));
    }
    return normalised;
  };

  constructor(options: TraceProcessorOptions = {}) {
    this.rules = options.rules;
    this.errorStatusOnCritical = options.errorStatusOnCritical ?? false;
  }

  /**
   * Derives and judges the roots of one trace, writing onto their messages: `spans`, held whole (its
   * roots are among them), and `forwarded`, the facts of its spans forwarded already.
   */
  process(spans: readonly CollectedSpan[], forwarded: readonly SpanFacts[] = []): TraceOutcome {
    const roots: RootWork[] = [];
    try {
      const facts: SpanFacts[] = [];
      for (const span of spans) facts.push(factsOfSpan(span, this.costs));
      for (const record of forwarded) facts.push(record);
      return this.processInto(facts, roots);
    } finally {
      // What was written reaches the span's bytes even when judging failed halfway; the maps read
      // for judging go (a span waiting for a downstream holds its bytes only).
      for (const root of roots) root.edits?.applyTo(root.span);
      for (const span of spans) span.releaseAttributes();
    }
  }

  // Once per trace, for a few hundred thousand traces a minute: no Map, Set or closure per trace
  // (roots are found by index), and attributes written as they are worked out.
  private processInto(spans: readonly SpanFacts[], roots: RootWork[]): TraceOutcome {
    const rootIndex = rootIndexes(spans);
    const count = spans.length;
    // Each root's work, at the root's index.
    const workAt: (RootWork | undefined)[] = new Array(count);
    // One operation two spans report (an ORM's span over its driver's) counts once: the inner one.
    // Worked out only for traces with a cost to derive.
    let outerDuplicates: Set<string> | undefined;
    // A queue library's own work beneath an enqueue span counts as the enqueue, not as queries.
    // Most traces have no enqueue span at all: then nothing is looked up.
    let enqueueWork: ReadonlySet<SpanFacts> | undefined;
    let derived = 0;
    for (let index = 0; index < count; index += 1) {
      // Only a span held whole can be a root (mayBeRoot): the others were forwarded as they came.
      const at = rootIndex[index];
      if (at < 0) continue;
      const rootFacts = spans[at];
      const root = rootFacts.span;
      if (root === undefined) continue;
      let work = workAt[at];
      if (work === undefined) {
        // A root that came with its cost record (from an SDK) keeps it: nothing is tallied.
        const tally = root.attributes[COST_DB_QUERIES] === undefined ? new CostTally(this.costs.fingerprints) : undefined;
        if (tally !== undefined) derived += 1;
        roots.push((workAt[at] = work = { span: root, tally, edits: undefined }));
      }
      const { tally } = work;
      // In-process, a span that ends after its root has ended is not counted; nor is the root.
      const span = spans[index];
      const { cost } = span;
      if (tally === undefined || cost === undefined || index === at || endsAfter(span, rootFacts)) continue;
      if ((outerDuplicates ??= outerDuplicateSpanIds(spans, identityOf)).has(span.spanId)) continue;
      enqueueWork ??= spans.some(isEnqueueSpan) ? enqueueWorkOf(spans, rootsOf(spans, rootIndex)) : NOTHING;
      if (enqueueWork.has(span)) continue;
      if (cost.enqueued !== undefined) tally.addEnqueued(cost.enqueued);
      else if (cost.contribution !== undefined) tally.add(cost.contribution, durationMsOf(span), cost.fingerprint);
    }
    try {
      for (const work of roots) if (work.tally !== undefined) work.tally.writeAttributes(this.writer.on(work.span, editsOf(work)));
    } finally {
      this.writer.off();
    }
    const breaches: BreachReport[] = [];
    let judged = 0;
    if (this.rules !== undefined) {
      for (const work of roots) {
        if (!isJudgeable(work.span.attributes)) continue;
        judged += 1;
        const reports = this.judge(work.span, editsOf(work), this.rules);
        for (const report of reports) breaches.push(report);
      }
    }
    return { roots: roots.length, derived, judged, breaches };
  }

  /** Applies core's judgement to an OTLP span. */
  private judge(root: CollectedSpan, edits: SpanEdits, rules: BudgetRuleSet): BreachReport[] {
    const judgement = judge({ attributes: root.attributes, durationMs: durationMs(root) }, rules, {
      errorStatusOnCritical: this.errorStatusOnCritical,
      normaliseRoute: this.normalisedRoute,
    });
    const written = judgement.attributes;
    for (const key in written) setAttribute(root, edits, key, written[key]);
    for (const event of judgement.events) {
      const attributes: WireKeyValue[] = [];
      for (const key in event.attributes) attributes.push({ key, value: plainToAnyValue(event.attributes[key]) });
      edits.events.push({ timeUnixNano: (root.endNs + BigInt(event.offsetNs)).toString(), name: event.name, attributes, droppedAttributesCount: 0 });
    }
    if (judgement.errorStatusMessage !== undefined) edits.status = { code: StatusCode.ERROR, message: judgement.errorStatusMessage };
    if (judgement.violations.length === 0) return [];
    return judgement.reports({
      service: root.origin.resource.serviceName,
      traceId: root.traceId,
      spanId: root.spanId,
      timeMs: Number(root.endNs / 1_000_000n),
    });
  }
}

/**
 * Route templates as other frameworks write parameters — `{id}` (Spring, ASP.NET, FastAPI, Go),
 * `<id>` and `<int:id>` (Flask, Django) — in the `:id` form budget rules match; a template
 * without a leading slash gets one. Only for matching: reports keep the template as sent.
 */
export function normaliseRouteTemplate(route: string): string {
  const path = route.startsWith('/') ? route : `/${route}`;
  return path
    .split('/')
    .map((segment) => {
      const braces = /^\{\*?([^}:=]+)(?:[:=][^}]*)?\}$/.exec(segment);
      if (braces !== null) return `:${braces[1]}`;
      const angle = /^<(?:[^:>]+:)?([^>]+)>$/.exec(segment);
      return angle !== null ? `:${angle[1]}` : segment;
    })
    .join('/');
}

function durationMs(span: CollectedSpan): number {
  const ns = span.endNs - span.startNs;
  return ns > 0n ? Number(ns) / 1e6 : 0;
}

function numberTypeOf(key: string): NumberType | undefined {
  const type = (COST_ATTRIBUTE_TYPES as Record<string, string>)[key];
  return type === 'int' || type === 'double' ? type : undefined;
}

/** Sets an attribute on the span's message (replacing one of the same key) and its plain map. */
function setAttribute(span: CollectedSpan, edits: SpanEdits, key: string, value: unknown, numberType?: NumberType): void {
  // In the plain map and not yet set here: the span came with it.
  edits.setAttribute(key, plainToAnyValue(value, numberType), !edits.attributes.has(key) && Object.hasOwn(span.attributes, key));
  (span.attributes as Record<string, unknown>)[key] = value;
}
