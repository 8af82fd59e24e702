/**
 * The wire bytes of the rows a pg (node-postgres) query returned, for `request_budget.db.response_bytes`.
 *
 * pg's protocol parser hands each DataRow message to `Query.prototype.handleDataRow` with its
 * `length` (the message's length field: itself, the field count and the fields), so the message
 * on the wire is that plus its type byte. A layer over `handleDataRow` adds it up on the result
 * the row goes to (a multi-statement query has one result per statement), as a number under a
 * symbol: one addition per row, nothing allocated. instrumentation-pg's responseHook then reads
 * it from the results it is handed (see {@link pgRowBytes}).
 *
 * pg-native's queries have no DataRow messages to read: their results are not counted, so their
 * bytes stay unknown rather than zero.
 */
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';
import { markAuxiliary } from './auxiliary-instrumentation';
import { describeError, reportProblem } from './diagnostics';
import { installLayer, removeLayer, type AnyFunction, type LayerState } from './prototype-layer';

const LAYER_NAME = 'pg-row-bytes';
const ROW_BYTES = Symbol('request-budget.pg-row-bytes');
/** The DataRow message's type byte, which its length field leaves out. */
const TYPE_BYTE = 1;

/** pg versions whose Query this was checked against (8.23). */
const SUPPORTED_VERSIONS = ['>=8 <9'];

interface CountedResult {
  [ROW_BYTES]?: number;
  rows?: unknown;
}

/**
 * Wire bytes of the rows in what instrumentation-pg's responseHook is handed: one result, or an
 * array of them for a multi-statement query. Undefined when any result with rows was not counted
 * (pg-native, pg loaded before request-budget): unknown, never a lower bound.
 */
export function pgRowBytes(data: unknown): number | undefined {
  if (!Array.isArray(data)) return resultBytes(data);
  let sum = 0;
  for (const result of data) {
    const bytes = resultBytes(result);
    if (bytes === undefined) return undefined;
    sum += bytes;
  }
  return sum;
}

function resultBytes(result: unknown): number | undefined {
  if (typeof result !== 'object' || result === null) return undefined;
  const counted = (result as CountedResult)[ROW_BYTES];
  if (counted !== undefined) return Number.isInteger(counted) ? counted : undefined;
  // No DataRow reached it: a result without rows weighs nothing, counted or not.
  const rows = (result as CountedResult).rows;
  return Array.isArray(rows) && rows.length === 0 ? 0 : undefined;
}

export class PgRowBytesInstrumentation extends InstrumentationBase<InstrumentationConfig> {
  private reported = false;

  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/pg-row-bytes', '0.1.0', config);
    // Adds bytes to the rows instrumentation-pg counts: says nothing of whether pg is counted.
    markAuxiliary(this);
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition('pg', SUPPORTED_VERSIONS, undefined, undefined, [
        new InstrumentationNodeModuleFile(
          'pg/lib/query.js',
          SUPPORTED_VERSIONS,
          (Query: { prototype?: object }) => {
            const layered = installLayer(Query?.prototype, 'handleDataRow', LAYER_NAME, (original, state) => this.countingRowBytes(original, state));
            if (!layered) this.reportOnce('its Query class has no handleDataRow method');
            return Query;
          },
          (Query?: { prototype?: object }) => removeLayer(Query?.prototype, 'handleDataRow', LAYER_NAME),
        ),
      ]),
    ];
  }

  /** handleDataRow(msg): adds the message's wire size to the result the row goes to, then parses it as before. */
  private countingRowBytes(original: AnyFunction, state: LayerState): AnyFunction {
    const instrumentation = this;
    // pg 8 passes the message alone; no rest parameter, which would allocate an array per row.
    return function handleDataRowCounted(this: { _result?: CountedResult }, message: { length?: unknown }) {
      try {
        const result = this._result;
        // A row that cannot be counted (no length, or the layer switched off midway) leaves NaN:
        // the result's bytes are then unknown, not short of that row.
        if (typeof result === 'object' && result !== null && (state.active || result[ROW_BYTES] !== undefined)) {
          const length = message?.length;
          result[ROW_BYTES] = state.active && typeof length === 'number' ? (result[ROW_BYTES] ?? 0) + TYPE_BYTE + length : Number.NaN;
        }
      } catch (error) {
        instrumentation.reportOnce(describeError(error));
      }
      return original.call(this, message);
    };
  }

  private reportOnce(why: string): void {
    if (this.reported) return;
    this.reported = true;
    reportProblem(`pg rows are counted without their wire bytes, so requests using pg get no cost.db.bytes (${why}; reported once)`);
  }
}
