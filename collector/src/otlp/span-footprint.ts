/**
 * What a decoded message keeps in memory, estimated while its byte fields are copied out of the
 * request body.
 *
 * protobufjs decodes `bytes` fields (trace and span ids, bytes attribute values) as views into the
 * body: one 16-byte trace id kept alive would keep the whole body (up to --max-body-size, outside
 * the JS heap, where no heap limit sees it) alive for as long as the span is held. Each is replaced
 * by a copy of its own.
 *
 * The estimate is cheap — one walk over what the decoder built — and on the high side: every
 * object counts ENTRY_BYTES (a decoded KeyValue with a short key and value measures about 35 bytes
 * of V8 heap, its AnyValue as much), every array slot 8, every string its length plus a header
 * (one byte per character: V8's Latin-1 strings; other text is under-counted at most twice), every
 * byte array its length plus its object.
 */

/** A decoded message or plain object: its header, hidden class share and a few properties. */
export const ENTRY_BYTES = 80;
/** A string's header. */
const STRING_BYTES = 16;
/** A Buffer object (its bytes are counted apart). */
const BYTE_ARRAY_BYTES = 128;

/**
 * Replaces every Uint8Array under `value` (message fields, array items) with a copy, and returns
 * the estimated bytes `value` holds.
 */
export function detachAndMeasure(value: unknown): number {
  if (typeof value === 'string') return STRING_BYTES + value.length;
  if (value === null || typeof value !== 'object') return 0;
  if (Array.isArray(value)) {
    let bytes = STRING_BYTES + 8 * value.length;
    for (let index = 0; index < value.length; index += 1) {
      const item: unknown = value[index];
      if (item instanceof Uint8Array) {
        value[index] = copyOf(item);
        bytes += BYTE_ARRAY_BYTES + item.length;
      } else bytes += detachAndMeasure(item);
    }
    return bytes;
  }
  const record = value as Record<string, unknown>;
  let bytes = ENTRY_BYTES;
  for (const key of Object.keys(record)) {
    const field = record[key];
    if (field instanceof Uint8Array) {
      record[key] = copyOf(field);
      bytes += BYTE_ARRAY_BYTES + field.length;
    } else bytes += detachAndMeasure(field);
  }
  return bytes;
}

/** A copy: small ones share Node's 8 KiB buffer pool (never a request body), larger ones get their own. */
function copyOf(view: Uint8Array): Buffer {
  return Buffer.from(view);
}
