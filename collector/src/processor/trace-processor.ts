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
} from '@request-budget/core';
import { plainToAnyValue, type CollectedSpan, type NumberType, type WireKeyValue } from '../otlp/otlp-model';
import { SpanEdits } from '../otlp/span-edit';
import { StatusCode } from '../otlp/otlp-schema';
import { enqueueWorkOf } from './enqueue-work';
import { attributeToRoots } from './root-attribution';
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

export class TraceProcessor {
  private readonly rules: BudgetRuleSet | undefined;
  private readonly errorStatusOnCritical: boolean;
  /** Reads what a span adds to a cost: for the spans held whole here, and for the trace window's records. */
  readonly costs = new SpanCostReader();
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
    const edits = new Map<CollectedSpan, SpanEdits>();
    try {
      const facts = spans.map((span) => factsOfSpan(span, this.costs));
      return this.processInto(forwarded.length === 0 ? facts : facts.concat(forwarded), edits);
    } finally {
      // What was written reaches the span's bytes even when judging failed halfway; the maps read
      // for judging go (a span waiting for a downstream holds its bytes only).
      for (const [span, spanEdits] of edits) spanEdits.applyTo(span);
      for (const span of spans) span.releaseAttributes();
    }
  }

  private processInto(spans: readonly SpanFacts[], edits: Map<CollectedSpan, SpanEdits>): TraceOutcome {
    const editsOf = (span: CollectedSpan): SpanEdits => {
      let spanEdits = edits.get(span);
      if (spanEdits === undefined) edits.set(span, (spanEdits = new SpanEdits()));
      return spanEdits;
    };
    const rootOf = attributeToRoots(spans);
    // One operation two spans report (an ORM's span over its driver's) counts once: the inner one.
    // Worked out only for traces with a cost to derive.
    let outerDuplicates: Set<string> | undefined;
    const isOuterDuplicate = (span: SpanFacts) =>
      (outerDuplicates ??= outerDuplicateSpanIds(spans.map((s) => ({ spanId: s.spanId, parentSpanId: s.parentSpanId, identity: s.cost?.identity })))).has(
        span.spanId,
      );
    // A queue library's own work beneath an enqueue span counts as the enqueue, not as queries.
    // Most traces have no enqueue span at all: then nothing is looked up.
    let enqueueWork: ReadonlySet<SpanFacts> | undefined;
    const isEnqueueWork = (span: SpanFacts) =>
      (enqueueWork ??= spans.some((s) => s.cost?.enqueued !== undefined) ? enqueueWorkOf(spans, rootOf) : NOTHING).has(span);
    const tallies = new Map<CollectedSpan, CostTally>();
    const roots = new Set<CollectedSpan>();
    for (let index = 0; index < spans.length; index += 1) {
      const span = spans[index];
      // Only a span held whole can be a root (mayBeRoot): the others were forwarded as they came.
      const rootFacts = rootOf[index];
      const root = rootFacts?.span;
      if (root === undefined) continue;
      roots.add(root);
      if (root.attributes[COST_DB_QUERIES] !== undefined) continue;
      let tally = tallies.get(root);
      if (tally === undefined) tallies.set(root, (tally = new CostTally(this.costs.fingerprints)));
      // In-process, a span that ends after its root has ended is not counted; nor is the root.
      const { cost } = span;
      if (cost === undefined || span === rootFacts || endsAfter(span, rootFacts!) || isOuterDuplicate(span) || isEnqueueWork(span)) continue;
      if (cost.enqueued !== undefined) tally.addEnqueued(cost.enqueued);
      else if (cost.contribution !== undefined) tally.add(cost.contribution, durationMsOf(span), cost.fingerprint);
    }
    for (const [root, tally] of tallies) {
      for (const [key, value] of Object.entries(tally.toAttributes())) setAttribute(root, editsOf(root), key, value, numberTypeOf(key));
    }
    const breaches: BreachReport[] = [];
    let judged = 0;
    if (this.rules !== undefined) {
      for (const root of roots) {
        if (!isJudgeable(root.attributes)) continue;
        judged += 1;
        breaches.push(...this.judge(root, editsOf(root), this.rules));
      }
    }
    return { roots: roots.size, derived: tallies.size, judged, breaches };
  }

  /** Applies core's judgement to an OTLP span. */
  private judge(root: CollectedSpan, edits: SpanEdits, rules: BudgetRuleSet): BreachReport[] {
    const judgement = judge({ attributes: root.attributes, durationMs: durationMs(root) }, rules, {
      errorStatusOnCritical: this.errorStatusOnCritical,
      normaliseRoute: this.normalisedRoute,
    });
    for (const [key, value] of Object.entries(judgement.attributes)) setAttribute(root, edits, key, value);
    for (const event of judgement.events) {
      edits.events.push({
        timeUnixNano: (root.endNs + BigInt(event.offsetNs)).toString(),
        name: event.name,
        attributes: Object.entries(event.attributes).map(([key, value]): WireKeyValue => ({ key, value: plainToAnyValue(value) })),
        droppedAttributesCount: 0,
      });
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
