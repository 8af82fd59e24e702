/**
 * The wire bytes of the rows a postgres.js query returned, for `request_budget.db.response_bytes`.
 *
 * postgres.js cuts the bytes it reads into messages with `Frames` (its protocol module) and hands
 * each one to its connection as `onframe(type, buffer, start, end)`: a DataRow message is `end -
 * start` bytes on the wire, type byte and length included. Which query the row belongs to is
 * known only inside the connection, which reads that query's `isRaw` field first thing when it
 * handles a DataRow. So the message's size is held while the connection handles it, and claimed
 * by the query that is read: an accessor over its `isRaw` field (set when the query starts, the
 * value kept as it was) adds it to the query's count. Per row: one addition, nothing allocated.
 *
 * The protocol module is an ES module file of postgres.js: it can be patched only through the ES
 * module loader hook (`node --import @request-budget/node/register`), for CommonJS apps too.
 * Without it no row is measured. A query's bytes are given only when it claimed exactly as many
 * DataRow messages as it returned rows: otherwise they are unknown, never a lower bound.
 */
import type { AnyFunction } from '../prototype-layer';

/** postgres.js's DataRow message type, 'D'. */
const DATA_ROW = 0x44;
const RAW = Symbol('request-budget.postgres-js.is-raw');
const COUNT = Symbol('request-budget.postgres-js.row-bytes');

interface WatchedQuery {
  [RAW]?: unknown;
  [COUNT]?: RowBytesCount;
}

/** Our layer over the protocol module's `Frames`, found again after a disable. */
interface FramesLayer {
  readonly original: AnyFunction;
  active: boolean;
}

const layers = new WeakMap<AnyFunction, FramesLayer>();
let activeLayers = 0;
// The size of the DataRow message a connection is handling, until its query claims it.
let pendingRowBytes = 0;

/**
 * Wraps the protocol module's `Frames` so that each connection's messages are measured; returns
 * whether it is wrapped now. `protocol` is the module's namespace, as the ES module hook hands it.
 */
export function measureRowMessages(protocol: unknown): boolean {
  const target = protocol as { Frames?: unknown } | null;
  const current = target?.Frames;
  if (typeof current !== 'function') return false;
  const existing = layers.get(current as AnyFunction);
  if (existing !== undefined) {
    if (!existing.active) activeLayers += 1;
    existing.active = true;
    return true;
  }
  const layer: FramesLayer = { original: current as AnyFunction, active: true };
  const wrapper = function Frames(this: unknown, onframe: unknown, ...rest: unknown[]) {
    // Checked against postgres.js 4.2's onframe(type, buffer, start, end); any other shape is left alone.
    const measured = layer.active && typeof onframe === 'function' && onframe.length === 4 ? measuringRows(onframe as AnyFunction) : onframe;
    return layer.original.call(this, measured, ...rest);
  };
  layers.set(wrapper, layer);
  target!.Frames = wrapper;
  activeLayers += 1;
  return true;
}

/** Switches the layer off, and takes it out when it is still the module's `Frames`. */
export function stopMeasuringRowMessages(protocol: unknown): void {
  const target = protocol as { Frames?: unknown } | null;
  const current = target?.Frames;
  const layer = typeof current === 'function' ? layers.get(current as AnyFunction) : undefined;
  if (layer === undefined || !layer.active) return;
  layer.active = false;
  activeLayers -= 1;
  target!.Frames = layer.original;
}

/** A connection's onframe, holding each DataRow message's size while the connection handles it. */
function measuringRows(onframe: AnyFunction): AnyFunction {
  return function frameMeasured(this: unknown, type: unknown, buffer: unknown, start: unknown, end: unknown) {
    if (type !== DATA_ROW || typeof start !== 'number' || typeof end !== 'number') return onframe.call(this, type, buffer, start, end);
    pendingRowBytes = end - start;
    try {
      return onframe.call(this, type, buffer, start, end);
    } finally {
      pendingRowBytes = 0;
    }
  };
}

/** The DataRow messages a query claimed, and their bytes. */
export interface RowBytesCount {
  bytes: number;
  messages: number;
}

/**
 * Makes the query claim the DataRow messages its connection handles for it (a batch's rows
 * arrive for its statements: each of them claims for the batch). Called as the query starts,
 * before postgres.js reads it; undefined while no protocol module is measured, or when the query
 * cannot be watched.
 */
export function watchRowBytes(query: object): RowBytesCount | undefined {
  if (activeLayers === 0) return undefined;
  try {
    const count: RowBytesCount = { bytes: 0, messages: 0 };
    const parts = (query as { parts?: unknown }).parts;
    if (!claimRowsFor(query, count)) return undefined;
    if (Array.isArray(parts)) for (const part of parts) if (!claimRowsFor(part, count)) return undefined;
    return count;
  } catch {
    return undefined; // its rows then come without their bytes, and the query runs as it would
  }
}

/** An accessor over the query's `isRaw`, which postgres.js reads first thing for each DataRow. */
function claimRowsFor(query: unknown, count: RowBytesCount): boolean {
  if (typeof query !== 'object' || query === null || !Object.isExtensible(query)) return false;
  const watched = query as WatchedQuery;
  const descriptor = Object.getOwnPropertyDescriptor(query, 'isRaw');
  if (descriptor?.get === readIsRaw) {
    watched[COUNT] = count;
    return true;
  }
  if (descriptor === undefined || descriptor.configurable !== true || !('value' in descriptor)) return false;
  watched[RAW] = descriptor.value;
  watched[COUNT] = count;
  Object.defineProperty(query, 'isRaw', { configurable: true, enumerable: descriptor.enumerable, get: readIsRaw, set: writeIsRaw });
  return true;
}

function readIsRaw(this: WatchedQuery): unknown {
  if (pendingRowBytes !== 0) {
    const count = this[COUNT];
    if (count !== undefined) {
      count.bytes += pendingRowBytes;
      count.messages += 1;
    }
    pendingRowBytes = 0;
  }
  return this[RAW];
}

function writeIsRaw(this: WatchedQuery, value: unknown): void {
  this[RAW] = value;
}

/**
 * The wire bytes of a query's `rows` rows: known when its messages were measured and it claimed
 * exactly one DataRow message per row, undefined otherwise.
 */
export function rowBytesOf(count: RowBytesCount | undefined, rows: number): number | undefined {
  return count !== undefined && count.messages === rows ? count.bytes : undefined;
}
