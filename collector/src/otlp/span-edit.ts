/**
 * What the collector writes on a root (its cost record, budget marks, breach events, an error
 * status), spliced into the span's message bytes: the attributes it replaces and the status it
 * overrides are cut out, the new fields appended. Protobuf readers take a message's fields in any
 * order, so the span reads as one whose attributes were set in that order, and every other byte is
 * forwarded as it came.
 */
import { int64ToBigInt, type CollectedSpan, type MessageBytes, type WireAnyValue, type WireEvent, type WireKeyValue, type WireStatus } from './otlp-model';
import { ATTRIBUTES, EVENTS, STATUS } from './span-fields';
import { varintSize, writeVarint } from './varint';
import { WireReader, WireType } from './wire-reader';

const KEY = (1 << 3) | WireType.LENGTH;

const keyFields = new Map<string, Buffer>();
const MAX_KEY_FIELDS = 512;

/** What is written on one span while its trace is processed. */
export class SpanEdits {
  /** Attributes set, in the order they were first set; each replaces one of the same key. */
  readonly attributes = new Map<string, WireAnyValue>();
  readonly events: WireEvent[] = [];
  status: WireStatus | undefined;
  /** An attribute set here was already on the span: its bytes must be looked for and cut out. */
  private replacesExisting = false;

  /** Sets an attribute; `onSpan`: the span came with one of that key (it is replaced, not repeated). */
  setAttribute(key: string, value: WireAnyValue, onSpan: boolean): void {
    if (onSpan) this.replacesExisting = true;
    this.attributes.set(key, value);
  }

  /** Writes the edits into `span`'s message bytes (and its memory estimate). */
  applyTo(span: CollectedSpan): void {
    const before = span.raw.length;
    span.raw = this.edit(span.raw);
    span.estimatedBytes += span.raw.length - before;
  }

  /**
   * `raw` with the edits (see editedBytes): replaced attributes and an overridden status cut
   * out, the new fields appended.
   */
  edit(raw: MessageBytes): MessageBytes {
    // Most roots get only new attributes and events: their bytes are kept whole, nothing is read.
    const kept = this.replacesExisting || this.status !== undefined ? this.keptRanges(raw) : [0, raw.length];
    const writer = FieldWriter.shared;
    writer.reset();
    for (const [key, value] of this.attributes) writer.keyValue(ATTRIBUTES, { key, value });
    for (const event of this.events) writer.event(event);
    if (this.status !== undefined) writer.status(this.status);
    let length = writer.length;
    for (let index = 0; index < kept.length; index += 2) length += kept[index + 1] - kept[index];
    const edited = editedBytes(length);
    let at = 0;
    for (let index = 0; index < kept.length; index += 2) at += raw.copy(edited, at, kept[index], kept[index + 1]);
    writer.copyTo(edited, at);
    return edited;
  }

  /** The ranges of `raw` to keep (start, end, …): all but the attributes set here and, when one is set here, its status. */
  private keptRanges(raw: MessageBytes): number[] {
    const reader = new WireReader(raw);
    const kept: number[] = [];
    let runStart = 0;
    while (reader.more) {
      const fieldStart = reader.pos;
      const tag = reader.tag();
      let cut = false;
      if (tag === ATTRIBUTES && this.attributes.size > 0) {
        const end = reader.lengthEnd();
        cut = this.attributes.has(keyOf(reader, end));
        reader.pos = end;
      } else if (tag === STATUS && this.status !== undefined) {
        reader.pos = reader.lengthEnd();
        cut = true;
      } else reader.skip(tag & 7);
      if (cut) {
        if (fieldStart > runStart) kept.push(runStart, fieldStart);
        runStart = reader.pos;
      }
    }
    if (raw.length > runStart) kept.push(runStart, raw.length);
    return kept;
  }
}

/**
 * Memory for an edited root: slices of 64 KiB buffers taken in turn, as an ArrayBuffer apiece costs
 * microseconds and Buffer's shared pool would let a root waiting for a downstream keep unrelated
 * memory alive. A buffer goes once the roots in it are sent; roots are sent about in the order they
 * were edited, so few buffers are kept by a root or two.
 */
const EDITED_BUFFER_BYTES = 64 * 1024;
let editedBuffer = Buffer.allocUnsafeSlow(0);
let editedUsed = 0;

function editedBytes(length: number): Buffer {
  if (length > EDITED_BUFFER_BYTES / 4) return Buffer.allocUnsafeSlow(length);
  if (editedUsed + length > editedBuffer.length) {
    editedBuffer = Buffer.allocUnsafeSlow(EDITED_BUFFER_BYTES);
    editedUsed = 0;
  }
  const slice = editedBuffer.subarray(editedUsed, editedUsed + length);
  editedUsed += length;
  return slice;
}

/**
 * Writes the fields edits add (KeyValue, AnyValue, Event, Status), each message's size worked out
 * before it is written. Values are what plainToAnyValue makes: strings, bools, ints (a number, or
 * decimal text beyond 2^53), doubles, arrays of those.
 */
class FieldWriter {
  /** Edits are written one span at a time: one writer serves them all. */
  static readonly shared = new FieldWriter();
  private bytes = Buffer.allocUnsafe(1024);
  private pos = 0;

  reset(): void {
    this.pos = 0;
  }

  get length(): number {
    return this.pos;
  }

  /** Copies what was written into `target` at `at`. */
  copyTo(target: Buffer, at: number): void {
    this.bytes.copy(target, at, 0, this.pos);
  }

  keyValue(tag: number, kv: WireKeyValue): void {
    const key = keyFieldOf(kv.key);
    if (kv.value === undefined || kv.value === null) {
      this.header(tag, key.length);
      this.raw(key);
      return;
    }
    // Each size worked out once: the value's is both in the KeyValue's and its own length.
    const valueSize = anyValueSize(kv.value);
    this.header(tag, key.length + fieldSize(valueSize));
    this.raw(key);
    this.header((2 << 3) | WireType.LENGTH, valueSize);
    this.anyValueBody(kv.value);
  }

  event(event: WireEvent): void {
    this.header(EVENTS, eventSize(event));
    this.fixed64(1, int64ToBigInt(event.timeUnixNano, true));
    this.string(2, event.name);
    for (const kv of event.attributes) this.keyValue((3 << 3) | WireType.LENGTH, kv);
  }

  status(status: WireStatus): void {
    this.header(STATUS, statusSize(status));
    if (status.message) this.string(2, status.message);
    if (status.code) this.varintField(3, status.code);
  }

  private anyValueBody(value: WireAnyValue): void {
    if (value.stringValue !== undefined && value.stringValue !== null) this.string(1, value.stringValue, true);
    else if (value.boolValue !== undefined && value.boolValue !== null) this.varintField(2, value.boolValue ? 1 : 0, true);
    else if (value.intValue !== undefined && value.intValue !== null) {
      this.ensure(11);
      this.bytes[this.pos++] = (3 << 3) | WireType.VARINT;
      // Counts are small non-negative numbers: written without a bigint.
      if (isSmallCount(value.intValue)) this.varint(value.intValue);
      else this.varint64(int64ToBigInt(value.intValue, false));
    } else if (value.doubleValue !== undefined && value.doubleValue !== null) {
      this.ensure(9);
      this.bytes[this.pos++] = (4 << 3) | WireType.FIXED64;
      this.pos = this.bytes.writeDoubleLE(value.doubleValue, this.pos);
    } else if (value.arrayValue) {
      const items = value.arrayValue.values ?? [];
      this.header((5 << 3) | WireType.LENGTH, arraySize(items));
      for (const item of items) {
        this.header((1 << 3) | WireType.LENGTH, anyValueSize(item));
        this.anyValueBody(item);
      }
    }
  }

  private header(tag: number, length: number): void {
    this.ensure(6 + length);
    this.bytes[this.pos++] = tag;
    this.varint(length);
  }

  /** A string field; proto3 leaves empty ones out, but not as a oneof member (`always`). */
  private string(number: number, text: string, always = false): void {
    if (text === '' && !always) return;
    const length = Buffer.byteLength(text);
    this.header((number << 3) | WireType.LENGTH, length);
    this.pos += this.bytes.write(text, this.pos, 'utf8');
  }

  /** Bytes written as they are (an encoded field). */
  private raw(bytes: Buffer): void {
    this.ensure(bytes.length);
    this.bytes.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  private varintField(number: number, value: number, always = false): void {
    if (value === 0 && !always) return;
    this.ensure(6);
    this.bytes[this.pos++] = (number << 3) | WireType.VARINT;
    this.varint(value);
  }

  private fixed64(number: number, value: bigint): void {
    this.ensure(9);
    this.bytes[this.pos++] = (number << 3) | WireType.FIXED64;
    this.pos = this.bytes.writeBigUInt64LE(BigInt.asUintN(64, value), this.pos);
  }

  private varint(value: number): void {
    this.pos = writeVarint(this.bytes, this.pos, value);
  }

  private varint64(value: bigint): void {
    let rest = BigInt.asUintN(64, value);
    while (rest >= 0x80n) {
      this.bytes[this.pos++] = Number(rest & 0x7fn) | 0x80;
      rest >>= 7n;
    }
    this.bytes[this.pos++] = Number(rest);
  }

  private ensure(more: number): void {
    if (this.pos + more <= this.bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.pos + more));
    this.bytes.copy(grown, 0, 0, this.pos);
    this.bytes = grown;
  }
}

/** A non-negative integer writeVarint takes as a number (below 2^53). */
function isSmallCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function varint64Size(value: bigint): number {
  let rest = BigInt.asUintN(64, value);
  let size = 1;
  while (rest >= 0x80n) {
    rest >>= 7n;
    size += 1;
  }
  return size;
}

const fieldSize = (length: number) => 1 + varintSize(length) + length;
const stringFieldSize = (text: string, always = false) => (text === '' && !always ? 0 : fieldSize(Buffer.byteLength(text)));

function anyValueSize(value: WireAnyValue): number {
  if (value.stringValue !== undefined && value.stringValue !== null) return stringFieldSize(value.stringValue, true);
  if (value.boolValue !== undefined && value.boolValue !== null) return 2;
  if (value.intValue !== undefined && value.intValue !== null)
    return 1 + (isSmallCount(value.intValue) ? varintSize(value.intValue) : varint64Size(int64ToBigInt(value.intValue, false)));
  if (value.doubleValue !== undefined && value.doubleValue !== null) return 9;
  if (value.arrayValue) return fieldSize(arraySize(value.arrayValue.values ?? []));
  return 0;
}

function arraySize(items: readonly WireAnyValue[]): number {
  let size = 0;
  for (const item of items) size += fieldSize(anyValueSize(item));
  return size;
}

function keyValueSize(kv: WireKeyValue): number {
  return keyFieldOf(kv.key).length + (kv.value !== undefined && kv.value !== null ? fieldSize(anyValueSize(kv.value)) : 0);
}

const NO_KEY_FIELD = Buffer.alloc(0);

/** KeyValue.key as an encoded field: the same few keys on every root, each encoded once (proto3 leaves an empty one out). */
function keyFieldOf(key: string): Buffer {
  if (key === '') return NO_KEY_FIELD;
  let field = keyFields.get(key);
  if (field === undefined) {
    const length = Buffer.byteLength(key);
    field = Buffer.allocUnsafe(1 + varintSize(length) + length);
    field[0] = KEY;
    field.write(key, writeVarint(field, 1, length), 'utf8');
    if (keyFields.size < MAX_KEY_FIELDS) keyFields.set(key, field);
  }
  return field;
}

function eventSize(event: WireEvent): number {
  let size = 9 + stringFieldSize(event.name);
  for (const kv of event.attributes) size += fieldSize(keyValueSize(kv));
  return size;
}

function statusSize(status: WireStatus): number {
  return (status.message ? stringFieldSize(status.message) : 0) + (status.code ? 1 + varintSize(status.code) : 0);
}

/** The key of the KeyValue from `reader.pos` to `end`. */
function keyOf(reader: WireReader, end: number): string {
  const outer = reader.end;
  reader.end = end;
  let key = '';
  while (reader.pos < end) {
    const tag = reader.tag();
    if (tag === KEY) key = reader.string();
    else reader.skip(tag & 7);
  }
  reader.end = outer;
  return key;
}
