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
 * Protobuf entries are counted while decoding (the decoder builds no object per entry it counts
 * before counting it); JSON ones on the raw text before JSON.parse.
 */
/** Entries in one request, whatever its size: about 35–150 MB and 0.1–0.2 s of decoding at most. */
export const MAX_ENTRIES_PER_REQUEST = 1_000_000;
/** Fewest bytes per entry on average (a span's int attribute is 9 bytes; an int array value 4). */
export const MIN_BYTES_PER_ENTRY = 4;
/** Entries any body may have, however small (a handful of spans). */
const SMALL_BODY_ENTRIES = 1024;
/** Nesting of messages (arrays within arrays of attribute values), protobuf and JSON alike. */
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

/**
 * Counts the entries of one protobuf body as the decoder builds them (span-decode.ts counts each
 * message and each repeated item before reading it). Throws {@link EntryBudgetError} at the first
 * entry past the budget, so a body of millions of empty entries stops after the budget's worth.
 */
export class EntryCounter {
  private readonly budget: number;
  private readonly bytes: number;
  private count = 0;

  /** `bytes`: the size the budget is for (of the body as received, for a body converted first). */
  constructor(bytes: number) {
    this.bytes = bytes;
    this.budget = entryBudgetFor(bytes);
  }

  get entries(): number {
    return this.count;
  }

  add(): void {
    if (++this.count > this.budget) throw overBudget(this.budget, this.bytes);
  }
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
