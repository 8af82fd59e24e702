/**
 * OTLP KeyValue lists read from the wire straight into plain maps (what core's classifier and
 * judgement read): no intermediate KeyValue or AnyValue objects. Values as anyValueToPlain gives
 * them: ints as numbers when safe (bigint beyond), bytes as base64, arrays, key-value lists as
 * objects, an AnyValue without a member as null; the last of duplicate keys wins. Every message and
 * list item is counted against the entry budget; wire types, lengths and nesting are checked.
 */
import { isUtf8 } from 'node:buffer';
import { CONTRACT_ATTRIBUTES } from '@request-budget/core';
import { EntryBudgetError, MAX_NESTING, type EntryCounter } from './entry-budget';
import { planOf, skipField, type CheckFindings } from './message-check';
import { StringPool } from './string-pool';
import { otlpRoot } from './otlp-schema';
import { WireType, type WireReader } from './wire-reader';

// Tags: (field number << 3) | wire type.
const KEY = (1 << 3) | WireType.LENGTH;
const VALUE = (2 << 3) | WireType.LENGTH;
const STRING_VALUE = (1 << 3) | WireType.LENGTH;
const BOOL_VALUE = (2 << 3) | WireType.VARINT;
const INT_VALUE = (3 << 3) | WireType.VARINT;
const DOUBLE_VALUE = (4 << 3) | WireType.FIXED64;
const ARRAY_VALUE = (5 << 3) | WireType.LENGTH;
const KVLIST_VALUE = (6 << 3) | WireType.LENGTH;
const BYTES_VALUE = (7 << 3) | WireType.LENGTH;
const LIST_VALUES = (1 << 3) | WireType.LENGTH;

// The fields of these messages as the schema declares them: what is not read here is skipped by it.
const ANY_VALUE_FIELDS = planOf(otlpRoot.lookupType('opentelemetry.proto.common.v1.AnyValue'));
const KEY_VALUE_FIELDS = planOf(otlpRoot.lookupType('opentelemetry.proto.common.v1.KeyValue'));
const ARRAY_FIELDS = planOf(otlpRoot.lookupType('opentelemetry.proto.common.v1.ArrayValue'));
const KEY_VALUE_LIST_FIELDS = planOf(otlpRoot.lookupType('opentelemetry.proto.common.v1.KeyValueList'));

/** Attribute keys repeat from span to span (nested lists' and resources' keys included). */
const keys = new StringPool(4096);

/**
 * The names of the attribute contract (all ASCII) by length and last byte: a KeyValue's key is
 * matched against them without making a string.
 */
const contractKeys = new Map<number, Array<{ readonly bytes: Buffer; readonly key: string }>>();
const bucketOf = (length: number, lastByte: number) => length * 256 + lastByte;
for (const key of CONTRACT_ATTRIBUTES) {
  const bytes = Buffer.from(key, 'latin1');
  const bucket = bucketOf(bytes.length, bytes[bytes.length - 1]);
  contractKeys.set(bucket, [...(contractKeys.get(bucket) ?? []), { bytes, key }]);
}

function contractKeyAt(buf: Buffer, start: number, end: number): string | undefined {
  if (end === start) return undefined;
  const candidates = contractKeys.get(bucketOf(end - start, buf[end - 1]));
  if (candidates === undefined) return undefined;
  for (const { bytes, key } of candidates) if (sameBytes(buf, start, end, bytes)) return key;
  return undefined;
}

/**
 * The key of the KeyValue from `reader.pos` to `end` when it is a name of the attribute contract
 * (core's CONTRACT_ATTRIBUTES: all that a cost record and a judgement read), else undefined.
 * Leaves `reader.pos` where it was. The KeyValue was checked when received.
 */
export function contractKeyOf(reader: WireReader, end: number): string | undefined {
  const start = reader.pos;
  const { buf } = reader;
  // As SDKs write it: the key (shorter than 128 bytes), then nothing or a value that runs to the
  // end (its length in one or two bytes) — then that key is the one.
  if (buf[start] === KEY && buf[start + 1] < 0x80) {
    const keyEnd = start + 2 + buf[start + 1];
    if (keyEnd === end || (buf[keyEnd] === VALUE && valueEnd(buf, keyEnd + 1) === end)) return contractKeyAt(buf, start + 2, keyEnd);
  }
  const outer = reader.end;
  reader.end = end;
  let key: string | undefined;
  while (reader.pos < end) {
    const tag = reader.tag();
    if (tag === KEY) {
      // The last key read wins, as in readKeyValue.
      const keyEnd = reader.lengthEnd();
      key = contractKeyAt(reader.buf, reader.pos, keyEnd);
      reader.pos = keyEnd;
    } else skipField(reader, tag, KEY_VALUE_FIELDS);
  }
  reader.pos = start;
  reader.end = outer;
  return key;
}

/** Where a field whose length varint starts at `at` ends, for lengths of one or two bytes; else -1. */
function valueEnd(buf: Buffer, at: number): number {
  const first = buf[at];
  if (first < 0x80) return at + 1 + first;
  const second = buf[at + 1];
  return second < 0x80 ? at + 2 + ((first & 0x7f) | (second << 7)) : -1;
}

/**
 * Reads one KeyValue (the message from `reader.pos` to `end`) into `out`. Returns the length of
 * text kept (key and string values), for the memory estimate. `knownKey`: the key, when the
 * caller has matched it already (contractKeyOf).
 */
export function readKeyValue(
  reader: WireReader,
  end: number,
  out: Record<string, unknown>,
  entries: EntryCounter,
  findings: CheckFindings,
  depth: number,
  knownKey?: string,
): number {
  const outer = reader.end;
  reader.end = end;
  let key = knownKey ?? '';
  let value: unknown = null;
  let text = 0;
  while (reader.pos < end) {
    const tag = reader.tag();
    if (tag === KEY) {
      if (knownKey === undefined) key = keys.shared(readString(reader, findings));
      else reader.pos = reader.lengthEnd();
    } else if (tag === VALUE) {
      entries.add();
      const valueEnd = reader.lengthEnd();
      value = readAnyValue(reader, valueEnd, entries, findings, depth + 1);
      text += valueText;
    } else skipField(reader, tag, KEY_VALUE_FIELDS);
  }
  reader.end = outer;
  setOwn(out, key, value);
  return text + key.length;
}

/** Text kept by the last readAnyValue (strings' length), for the memory estimate; not returned to allocate nothing per value. */
let valueText = 0;

function readAnyValue(reader: WireReader, end: number, entries: EntryCounter, findings: CheckFindings, depth: number): unknown {
  if (depth > MAX_NESTING) throw new EntryBudgetError(`request nests messages deeper than ${MAX_NESTING} levels`);
  const outer = reader.end;
  reader.end = end;
  let value: unknown = null;
  let text = 0;
  while (reader.pos < end) {
    const tag = reader.tag();
    switch (tag) {
      case STRING_VALUE: {
        const string = readString(reader, findings);
        value = string;
        text = string.length;
        break;
      }
      case BOOL_VALUE:
        value = reader.bool();
        break;
      case INT_VALUE:
        value = reader.int64();
        break;
      case DOUBLE_VALUE:
        value = reader.double();
        break;
      case ARRAY_VALUE:
        value = readArray(reader, entries, findings, depth);
        text = valueText;
        break;
      case KVLIST_VALUE:
        value = readKeyValueList(reader, entries, findings, depth);
        text = valueText;
        break;
      case BYTES_VALUE: {
        const bytesEnd = reader.lengthEnd();
        const base64 = reader.buf.toString('base64', reader.pos, bytesEnd);
        reader.pos = bytesEnd;
        value = base64;
        text = base64.length;
        break;
      }
      default:
        skipField(reader, tag, ANY_VALUE_FIELDS);
    }
  }
  reader.end = outer;
  valueText = text;
  return value;
}

// Apart from readAnyValue: closures there would make every call allocate a context for its locals.
function readArray(reader: WireReader, entries: EntryCounter, findings: CheckFindings, depth: number): unknown[] {
  const items: unknown[] = [];
  let text = 0;
  forEachItem(reader, entries, ARRAY_FIELDS, (itemEnd) => {
    items.push(readAnyValue(reader, itemEnd, entries, findings, depth + 1));
    text += valueText + 8;
  });
  valueText = text;
  return items;
}

function readKeyValueList(reader: WireReader, entries: EntryCounter, findings: CheckFindings, depth: number): Record<string, unknown> {
  const map: Record<string, unknown> = {};
  let text = 0;
  forEachItem(reader, entries, KEY_VALUE_LIST_FIELDS, (itemEnd) => {
    text += readKeyValue(reader, itemEnd, map, entries, findings, depth + 1) + 16;
  });
  valueText = text;
  return map;
}

/** Reads an ArrayValue or KeyValueList (length prefix at `reader.pos`): `read` gets each item's end. */
function forEachItem(reader: WireReader, entries: EntryCounter, plan: ReturnType<typeof planOf>, read: (itemEnd: number) => void): void {
  const listEnd = reader.lengthEnd();
  const outer = reader.end;
  reader.end = listEnd;
  while (reader.pos < listEnd) {
    const itemTag = reader.tag();
    if (itemTag !== LIST_VALUES) {
      skipField(reader, itemTag, plan);
      continue;
    }
    entries.add();
    read(reader.lengthEnd());
  }
  reader.end = outer;
}

/**
 * Checks one KeyValue (from `reader.pos` to `end`) as readKeyValue would read it, building
 * nothing: wire types, lengths, nesting, UTF-8, entries counted. Returns, for a KeyValue whose key
 * is `markerKey`, whether its value is the boolean true; undefined for any other key.
 */
export function checkKeyValue(
  reader: WireReader,
  end: number,
  entries: EntryCounter,
  findings: CheckFindings,
  depth: number,
  markerKey?: Buffer,
): boolean | undefined {
  const outer = reader.end;
  reader.end = end;
  let isMarker = false;
  let isTrue = false;
  while (reader.pos < end) {
    const tag = reader.tag();
    if (tag === KEY) {
      const keyEnd = reader.lengthEnd();
      checkUtf8(reader.buf, reader.pos, keyEnd, findings);
      isMarker = markerKey !== undefined && sameBytes(reader.buf, reader.pos, keyEnd, markerKey);
      reader.pos = keyEnd;
    } else if (tag === VALUE) {
      entries.add();
      isTrue = checkAnyValue(reader, reader.lengthEnd(), entries, findings, depth + 1);
    } else skipField(reader, tag, KEY_VALUE_FIELDS);
  }
  reader.end = outer;
  return isMarker ? isTrue : undefined;
}

/** Checks an AnyValue; returns whether it is the boolean true. */
function checkAnyValue(reader: WireReader, end: number, entries: EntryCounter, findings: CheckFindings, depth: number): boolean {
  if (depth > MAX_NESTING) throw new EntryBudgetError(`request nests messages deeper than ${MAX_NESTING} levels`);
  const outer = reader.end;
  reader.end = end;
  let isTrue = false;
  while (reader.pos < end) {
    const tag = reader.tag();
    // Each member read replaces the one before (as readAnyValue keeps the last); fields unknown here do not.
    if (tag >>> 3 >= 1 && tag >>> 3 <= 7) isTrue = false;
    switch (tag) {
      case STRING_VALUE: {
        const stringEnd = reader.lengthEnd();
        checkUtf8(reader.buf, reader.pos, stringEnd, findings);
        reader.pos = stringEnd;
        break;
      }
      case BOOL_VALUE:
        isTrue = reader.bool();
        break;
      case INT_VALUE:
        reader.skipVarint();
        break;
      case DOUBLE_VALUE:
      case BYTES_VALUE:
        reader.skip(tag & 7);
        break;
      case ARRAY_VALUE:
        checkList(reader, entries, findings, depth, false);
        break;
      case KVLIST_VALUE:
        checkList(reader, entries, findings, depth, true);
        break;
      default:
        skipField(reader, tag, ANY_VALUE_FIELDS);
    }
  }
  reader.end = outer;
  return isTrue;
}

// Apart from checkAnyValue, as readArray is from readAnyValue: no context allocated per value.
function checkList(reader: WireReader, entries: EntryCounter, findings: CheckFindings, depth: number, keyValues: boolean): void {
  forEachItem(reader, entries, keyValues ? KEY_VALUE_LIST_FIELDS : ARRAY_FIELDS, (itemEnd) => {
    if (keyValues) checkKeyValue(reader, itemEnd, entries, findings, depth + 1);
    else checkAnyValue(reader, itemEnd, entries, findings, depth + 1);
  });
}

/** Notes bytes that are not UTF-8; ASCII (the common case) is told in JavaScript, without a call. */
function checkUtf8(buf: Buffer, start: number, end: number, findings: CheckFindings): void {
  if (findings.invalidUtf8) return;
  for (let index = start; index < end; index += 1) {
    if (buf[index] >= 0x80) {
      if (!isUtf8(buf.subarray(start, end))) findings.invalidUtf8 = true;
      return;
    }
  }
}

function sameBytes(buf: Buffer, start: number, end: number, expected: Buffer): boolean {
  if (end - start !== expected.length) return false;
  for (let index = 0; index < expected.length; index += 1) if (buf[start + index] !== expected[index]) return false;
  return true;
}

/** A string field's text; notes invalid UTF-8 (read as U+FFFD, as protobufjs does). */
export function readString(reader: WireReader, findings: CheckFindings): string {
  const end = reader.lengthEnd();
  const start = reader.pos;
  reader.pos = end;
  if (end === start) return '';
  const value = reader.buf.toString('utf8', start, end);
  // U+FFFD stands for invalid input, or was sent as such: only then are the bytes looked at.
  if (!findings.invalidUtf8 && value.includes('\uFFFD') && !isUtf8(reader.buf.subarray(start, end))) findings.invalidUtf8 = true;
  return value;
}

/** `out[key] = value`, as an own property even for keys like `__proto__`. */
export function setOwn(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  else out[key] = value;
}
