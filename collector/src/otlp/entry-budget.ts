/**
 * The decode budget of a request body: how many entries (messages — spans, attributes, their
 * values, events, links, array and key-value list items — repeated strings, and for JSON every
 * object and array) decoding it may create, counted on the raw bytes before anything is decoded.
 *
 * A few bytes can stand for an entry (an empty attribute is 2 bytes of protobuf) and each decoded
 * entry costs about 35 bytes of heap and 0.1 µs of event loop at least: 10 MiB of empty attributes
 * would be 5 million objects. The count stops as soon as it passes the budget, so such a body is
 * refused after scanning as many entries as the budget allows, in milliseconds.
 *
 * The protobuf scan reads every field as the decoder will (by its declared type, not its wire type,
 * within the same bounds), so what it counts is what the decoder would build.
 */
import protobuf from 'protobufjs';

/** Entries in one request, whatever its size: about 35–150 MB and 0.1–0.2 s of decoding at most. */
export const MAX_ENTRIES_PER_REQUEST = 1_000_000;
/** Fewest bytes per entry on average (a span's int attribute is 9 bytes; an int array value 4). */
export const MIN_BYTES_PER_ENTRY = 4;
/** Entries any body may have, however small (a handful of spans). */
const SMALL_BODY_ENTRIES = 1024;
/** Nesting of messages (arrays within arrays of attribute values), as for OTLP/JSON. */
export const MAX_NESTING = 64;

/** The body would decode into more entries than allowed, or nests too deep. */
export class EntryBudgetError extends Error {
  override name = 'EntryBudgetError';
}

/** Entries a body of `bytes` (inflated) may decode into. */
export function entryBudgetFor(bytes: number): number {
  return Math.min(MAX_ENTRIES_PER_REQUEST, SMALL_BODY_ENTRIES + Math.floor(bytes / MIN_BYTES_PER_ENTRY));
}

function overBudget(budget: number, bytes: number): EntryBudgetError {
  const which =
    budget === MAX_ENTRIES_PER_REQUEST
      ? `the limit of ${MAX_ENTRIES_PER_REQUEST} entries per request`
      : `the limit of ${budget} entries for a body of ${bytes} bytes (${SMALL_BODY_ENTRIES} + one per ${MIN_BYTES_PER_ENTRY} bytes)`;
  return new EntryBudgetError(`request has more entries (spans, attributes, values, events, links) than ${which}; send smaller batches`);
}

type FieldRead = protobuf.Type | 'length' | 'varint' | 'fixed32' | 'fixed64';
interface FieldPlan {
  readonly read: FieldRead;
  /** Counted as an entry (a message, or an item of a repeated field). */
  readonly entry: boolean;
}

const plans = new WeakMap<protobuf.Type, Map<number, FieldPlan>>();

/** How the decoder reads each field of `type`: by its declared type. */
function planOf(type: protobuf.Type): Map<number, FieldPlan> {
  let plan = plans.get(type);
  if (plan !== undefined) return plan;
  plan = new Map();
  for (const field of type.fieldsArray) {
    const resolved = field.resolve().resolvedType;
    let read: FieldRead;
    if (resolved instanceof protobuf.Type) read = resolved;
    else if (field.type === 'string' || field.type === 'bytes') read = 'length';
    else if (field.type === 'double' || field.type === 'fixed64' || field.type === 'sfixed64') read = 'fixed64';
    else if (field.type === 'float' || field.type === 'fixed32' || field.type === 'sfixed32') read = 'fixed32';
    else read = 'varint';
    plan.set(field.id, { read, entry: resolved instanceof protobuf.Type || field.repeated });
  }
  plans.set(type, plan);
  return plan;
}

/**
 * Counts the entries of a protobuf body of `type`. Throws {@link EntryBudgetError} past the budget,
 * or the reader's own error (the one decoding would throw) for a body that does not decode.
 */
export function checkProtobufEntries(body: Uint8Array, type: protobuf.Type): number {
  const budget = entryBudgetFor(body.length);
  const reader = protobuf.Reader.create(body);
  let entries = 0;
  const scan = (message: protobuf.Type, depth: number): void => {
    const plan = planOf(message);
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const field = plan.get(tag >>> 3);
      if (field === undefined) {
        reader.skipType(tag & 7);
        continue;
      }
      if (field.entry && ++entries > budget) throw overBudget(budget, body.length);
      switch (field.read) {
        case 'varint':
          reader.skipType(0);
          break;
        case 'fixed32':
          reader.skip(4);
          break;
        case 'fixed64':
          reader.skip(8);
          break;
        case 'length':
          reader.skip(reader.uint32());
          break;
        default: {
          if (depth >= MAX_NESTING) throw new EntryBudgetError(`request nests messages deeper than ${MAX_NESTING} levels`);
          // Within the message's own bounds, as the decoder reads it.
          const length = reader.uint32();
          const end = reader.pos + length;
          if (end > reader.len) throw new RangeError(`index out of range: ${reader.pos} + ${length} > ${reader.len}`);
          const outer = reader.len;
          reader.len = end;
          scan(field.read, depth + 1);
          reader.len = outer;
        }
      }
    }
  };
  scan(type, 0);
  return entries;
}

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Counts the objects and arrays of a JSON body (outside strings) before JSON.parse builds them.
 * Throws {@link EntryBudgetError} past the budget.
 */
export function checkJsonEntries(body: Uint8Array): number {
  const budget = entryBudgetFor(body.length);
  let entries = 0;
  let inString = false;
  for (let index = 0; index < body.length; index += 1) {
    const byte = body[index];
    if (inString) {
      if (byte === BACKSLASH) index += 1;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) inString = true;
    else if ((byte === OPEN_BRACE || byte === OPEN_BRACKET) && ++entries > budget) throw overBudget(budget, body.length);
  }
  return entries;
}
