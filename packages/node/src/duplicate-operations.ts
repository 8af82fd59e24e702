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

const NODE = Symbol('request-budget.operation');
/** Operation spans started most recently, own and others', where a twin is looked for. */
const RECENT = 16;
type Linked = { [NODE]?: OperationNode };

/** Instrumentations whose other instances request-budget gives its row hook (adopted-instrumentations.ts). */
const ROWS_HOOK_SCOPES = new Set(['@opentelemetry/instrumentation-pg', '@opentelemetry/instrumentation-mysql2']);

const FIX =
  'run one OpenTelemetry setup: either request-budget\'s register alone, or your own NodeSDK with requestBudgetComponents() spread into it (see the README, "Inside an existing OpenTelemetry setup")';

export class DuplicateOperations {
  // The operation spans started last, with the spans they started under: a ring each for own
  // spans and for other instances' (empty until another instance shows up, so an own span costs
  // two array writes when there is none).
  private readonly own = new RecentOperations();
  private readonly others = new RecentOperations();
  private readonly reported = new Set<string>();

  /** Operation spans remembered to pair twins. Exposed for tests: it stays bounded. */
  get rememberedForTwins(): number {
    return this.own.size + this.others.size;
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

  /**
   * Twins start back to back under the same parent, one from each instance. A span of another
   * instance is a twin when an own span of the same scope and operation under the same parent is
   * still running among the last few started, and the other way round.
   */
  private matchTwins(node: OperationNode, parent: object | undefined): void {
    if (node.own) {
      this.own.add(node, parent);
      if (this.others.size > 0) for (const other of this.others.matching(node, parent)) this.markTwin(other);
    } else {
      this.others.add(node, parent);
      if (this.own.matching(node, parent).length > 0) this.markTwin(node);
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

/** The last {@link RECENT} operation spans of one kind (own or others'), with their parents. */
class RecentOperations {
  private readonly nodes: (OperationNode | undefined)[] = new Array<OperationNode | undefined>(RECENT);
  private readonly parents: (object | undefined)[] = new Array<object | undefined>(RECENT);
  private next = 0;
  size = 0;

  add(node: OperationNode, parent: object | undefined): void {
    this.nodes[this.next] = node;
    this.parents[this.next] = parent;
    this.next = (this.next + 1) % RECENT;
    if (this.size < RECENT) this.size += 1;
  }

  /** Running spans among these of the same scope and operation as `node`, under the same parent. */
  matching(node: OperationNode, parent: object | undefined): OperationNode[] {
    const found: OperationNode[] = [];
    for (let i = 0; i < this.size; i += 1) {
      const other = this.nodes[i];
      if (other === undefined || other === node || other.ended || this.parents[i] !== parent || other.scope !== node.scope) continue;
      if (operationKey(other.identity) === operationKey(node.identity)) found.push(other);
    }
    return found;
  }
}
