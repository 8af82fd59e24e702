/**
 * Keeps an operation from being counted twice when two spans report it:
 * - nested: an ORM's or query builder's span over its driver's (Knex, Prisma with a driver
 *   adapter), or two instances of one instrumentation wrapping one another. The innermost span
 *   is counted (the driver's: the statement as the server ran it, and the rows); an outer one is
 *   counted only when it ended before any inner one (then the inner ones are not).
 * - side by side: two instances of one instrumentation subscribed to the same diagnostics
 *   channel (undici) start one span each, in the same synchronous turn, under the same parent.
 *   The own instance's span is counted (it carries request-budget's hooks); the other is a twin.
 *
 * Each problem found in the process's OpenTelemetry setup is reported once, with the fix.
 */
import type { Span } from '@opentelemetry/api';
import type { ReadableSpan, Span as SdkSpan } from '@opentelemetry/sdk-trace';
import {
  HTTP_CLIENT_TIMED,
  operationIdentity,
  operationKey,
  sameOperation,
  type CostContribution,
  type OperationIdentity,
  type SpanKindName,
} from '@request-budget/core';
import { reportProblem } from './diagnostics';
import { LightSpan } from './light-span';
import { isOwnScope, isStartingOwnSpan } from './own-spans';

/** What a span reporting an operation carries while its trace runs. */
interface OperationNode {
  readonly identity: OperationIdentity;
  /** The span itself, read for what an inner span lacks (the timeout judgement). */
  readonly span: SdkSpan;
  readonly scope: string;
  readonly own: boolean;
  /** The nearest enclosing span that reports the same operation. */
  readonly outer: OperationNode | undefined;
  /** An inner span of the same operation was counted: this one is not. */
  superseded: boolean;
  /** Another instance's span beside an own one: not counted. */
  twin: boolean;
  ended: boolean;
  counted: boolean;
}

interface TurnEntry {
  own: boolean;
  readonly others: OperationNode[];
}

const NODE = Symbol('request-budget.operation');
/** Operation spans remembered within one synchronous turn, to pair side-by-side twins. */
const MAX_TURN_ENTRIES = 256;
type Linked = { [NODE]?: OperationNode };

/** Instrumentations whose other instances request-budget gives its row hook (adopted-instrumentations.ts). */
const ROWS_HOOK_SCOPES = new Set(['@opentelemetry/instrumentation-pg', '@opentelemetry/instrumentation-mysql2']);

const FIX =
  'run one OpenTelemetry setup: either request-budget\'s register alone, or your own NodeSDK with requestBudgetComponents() spread into it (see the README, "Inside an existing OpenTelemetry setup")';

export class DuplicateOperations {
  // Operation spans started in the current synchronous turn, by parent, scope and operation.
  private readonly turn = new Map<string, TurnEntry>();
  private readonly reported = new Set<string>();

  /** Operation spans remembered in the current turn. Exposed for tests: it stays bounded. */
  get rememberedInTurn(): number {
    return this.turn.size;
  }

  /**
   * Links a span attributed to a root to the operation it reports, or to the one it runs inside.
   * `parent` is the span of its start context.
   */
  onStart(span: SdkSpan, kind: SpanKindName, parent: object | undefined): void {
    const enclosing = (parent as Linked | undefined)?.[NODE];
    const identity = operationIdentity(kind, span.name, span.attributes);
    if (identity === undefined) {
      if (enclosing !== undefined) (span as SdkSpan & Linked)[NODE] = enclosing;
      return;
    }
    const scope = span.instrumentationScope.name;
    const outer = enclosing !== undefined && sameOperation(enclosing.identity, identity) ? enclosing : undefined;
    const node: OperationNode = { identity, span, scope, own: isStartingOwnSpan(), outer, superseded: false, twin: false, ended: false, counted: false };
    (span as SdkSpan & Linked)[NODE] = node;
    if (outer !== undefined && outer.scope === scope) {
      this.reportOnce(
        `nested ${scope}`,
        `${scope} is active twice: each operation gets two spans, one inside the other. request-budget counts it once; to stop the duplicate spans, ${FIX}`,
      );
    }
    this.matchTwins(node, parent);
  }

  /**
   * What the ended span adds to the cost: its contribution, undefined when another span reports
   * the operation, or the contribution completed with what the enclosing span knew.
   */
  admit(span: ReadableSpan, contribution: CostContribution | undefined): CostContribution | undefined {
    const node = (span as ReadableSpan & Linked)[NODE];
    if (node === undefined || (node.span as unknown) !== span) return contribution;
    node.ended = true;
    if (contribution === undefined || node.twin || node.superseded) return undefined;
    const outer = node.outer;
    if (outer !== undefined) {
      if (outer.ended && outer.counted) return undefined;
      outer.superseded = true;
    }
    node.counted = true;
    if (!node.own && isOwnScope(node.scope)) {
      const hooks = ROWS_HOOK_SCOPES.has(node.scope) ? "with request-budget's row hook added to it" : "without request-budget's hooks";
      this.reportOnce(
        `replaced ${node.scope}`,
        `request-budget's ${node.scope} was replaced by another instance registered after it (another OpenTelemetry setup in this process); its spans are counted instead, ${hooks}. To stop the duplicate patching, ${FIX}`,
      );
    }
    if (contribution.type === 'db' || contribution.timed !== undefined || outer === undefined) return contribution;
    return { ...contribution, timed: timedOf(outer) };
  }

  private matchTwins(node: OperationNode, parent: object | undefined): void {
    // Light spans share their root's span context: told apart by their own number.
    const parentId = parent instanceof LightSpan ? `light ${parent.localId}` : ((parent as Span | undefined)?.spanContext?.().spanId ?? '');
    const key = `${parentId} ${node.scope} ${operationKey(node.identity)}`;
    if (this.turn.size === 0) queueMicrotask(() => this.turn.clear());
    // Twins start back to back; a long synchronous loop of spans must not hold them all (memory
    // bounded whatever the turn does): past the bound, what came before is let go.
    else if (this.turn.size >= MAX_TURN_ENTRIES) this.turn.clear();
    let entry = this.turn.get(key);
    if (entry === undefined) this.turn.set(key, (entry = { own: false, others: [] }));
    if (node.own) {
      entry.own = true;
      for (const other of entry.others.splice(0)) this.markTwin(other);
    } else if (entry.own) {
      this.markTwin(node);
    } else {
      entry.others.push(node);
    }
  }

  private markTwin(node: OperationNode): void {
    node.twin = true;
    this.reportOnce(
      `twin ${node.scope}`,
      `${node.scope} is registered twice (request-budget's and another OpenTelemetry setup's, e.g. auto-instrumentations-node's register): each call is traced twice, side by side. request-budget counts it once, from its own span; to stop the duplicate spans, ${FIX}`,
    );
  }

  private reportOnce(key: string, message: string): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    reportProblem(message);
  }
}

function timedOf(node: OperationNode | undefined): boolean | undefined {
  for (let outer = node; outer !== undefined; outer = outer.outer) {
    const timed = outer.span.attributes[HTTP_CLIENT_TIMED];
    if (typeof timed === 'boolean') return timed;
  }
  return undefined;
}
