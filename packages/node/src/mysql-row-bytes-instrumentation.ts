/**
 * The wire bytes of the rows a mysql2 query returned, for `request_budget.db.response_bytes`.
 *
 * mysql2 hands each packet of a result's row phase to the command's `row` method (Query's, which
 * Execute shares): a row, or the EOF/OK packet that ends the result set. A row packet's `start`
 * and `end` span its 4-byte header and payload; a row over 16 MiB arrives as several packets,
 * reassembled under one header, so each further packet adds its own 4 bytes back. A layer over
 * `row` adds the size up on the array the result's rows go to, as a number under a symbol (one
 * addition per row, nothing allocated), and notes it on the command for a streamed query, whose
 * rows are counted as they are delivered (mysql-stream-instrumentation.ts).
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

const LAYER_NAME = 'mysql2-row-bytes';
const ROW_BYTES = Symbol('request-budget.mysql2-row-bytes');
const LAST_ROW_BYTES = Symbol('request-budget.mysql2-last-row-bytes');
/** Every MySQL packet's header: 3 bytes of payload length and a sequence id. */
const PACKET_HEADER_BYTES = 4;

/** mysql2 versions whose commands and packets this was checked against (3.24). */
const SUPPORTED_VERSIONS = ['>=2 <4'];

interface RowPacket {
  start?: unknown;
  end?: unknown;
  numPackets?: unknown;
  isEOF?: () => boolean;
}

type CountedRows = unknown[] & { [ROW_BYTES]?: number };

interface RowCommand {
  _rows?: unknown;
  _resultIndex?: unknown;
  [LAST_ROW_BYTES]?: number;
}

/**
 * Wire bytes of one result set's rows (the row array a callback gets), or undefined when rows
 * reached it uncounted: unknown, never a lower bound.
 */
export function rowSetBytes(rows: readonly unknown[]): number | undefined {
  const counted = (rows as CountedRows)[ROW_BYTES];
  if (counted !== undefined) return Number.isInteger(counted) ? counted : undefined;
  return rows.length === 0 ? 0 : undefined;
}

/** Wire bytes of the row packet the command is handing over right now (its 'result' event), if counted. */
export function lastRowBytes(command: object): number | undefined {
  const bytes = (command as RowCommand)[LAST_ROW_BYTES];
  return bytes !== undefined && Number.isInteger(bytes) ? bytes : undefined;
}

export class MysqlRowBytesInstrumentation extends InstrumentationBase<InstrumentationConfig> {
  private reported = false;

  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/mysql2-row-bytes', '0.1.0', config);
    // Adds bytes to the rows instrumentation-mysql2 counts: says nothing of whether mysql2 is counted.
    markAuxiliary(this);
  }

  protected init() {
    // Execute copies Query's `row` when mysql2 loads it: layering Query's first covers both, and
    // the layer is found, not stacked, on Execute's.
    const file = (path: string) =>
      new InstrumentationNodeModuleFile(
        path,
        SUPPORTED_VERSIONS,
        (Command: { prototype?: object }) => {
          const layered = installLayer(Command?.prototype, 'row', LAYER_NAME, (original, state) => this.countingRowBytes(original, state));
          if (!layered) this.reportOnce(`${path} has no row method`);
          return Command;
        },
        (Command?: { prototype?: object }) => removeLayer(Command?.prototype, 'row', LAYER_NAME),
      );
    return [
      new InstrumentationNodeModuleDefinition('mysql2', SUPPORTED_VERSIONS, undefined, undefined, [
        file('mysql2/lib/commands/query.js'),
        file('mysql2/lib/commands/execute.js'),
      ]),
    ];
  }

  /** row(packet): adds a row packet's wire size to its result set's rows, then handles it as before. */
  private countingRowBytes(original: AnyFunction, state: LayerState): AnyFunction {
    const instrumentation = this;
    // mysql2 passes the packet and the connection; no rest parameter, which would allocate an array per row.
    return function rowCounted(this: RowCommand, packet: RowPacket, connection: unknown) {
      try {
        noteRow(this, packet, state.active);
      } catch (error) {
        instrumentation.reportOnce(describeError(error));
      }
      return original.call(this, packet, connection);
    };
  }

  private reportOnce(why: string): void {
    if (this.reported) return;
    this.reported = true;
    reportProblem(`mysql2 rows are counted without their wire bytes, so requests using mysql2 get no cost.db.bytes (${why}; reported once)`);
  }
}

/**
 * A row that cannot be measured (unexpected packet fields, or the layer switched off midway)
 * leaves NaN: its result set's bytes are then unknown, not short of that row.
 */
function noteRow(command: RowCommand, packet: RowPacket, active: boolean): void {
  // The EOF or OK packet ending the result set is not a row; without isEOF, no packet can be told apart.
  const known = typeof packet?.isEOF === 'function';
  if (known && packet.isEOF!()) return;
  const bytes = active && known ? packetBytes(packet) : Number.NaN;
  command[LAST_ROW_BYTES] = bytes;
  const sets = command._rows;
  const rows = Array.isArray(sets) && typeof command._resultIndex === 'number' ? (sets[command._resultIndex] as unknown) : undefined;
  if (!Array.isArray(rows)) return;
  const counted = rows as CountedRows;
  if (active || counted[ROW_BYTES] !== undefined) counted[ROW_BYTES] = (counted[ROW_BYTES] ?? 0) + bytes;
}

function packetBytes(packet: RowPacket): number {
  const { start, end, numPackets } = packet;
  if (typeof start !== 'number' || typeof end !== 'number') return Number.NaN;
  const parts = typeof numPackets === 'number' && numPackets > 1 ? numPackets : 1;
  return end - start + PACKET_HEADER_BYTES * (parts - 1);
}
