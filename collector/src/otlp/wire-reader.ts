/**
 * Protobuf wire reading over a request body: varints, fixed-width numbers and length-delimited
 * ranges, each checked against the end of the message being read. Nothing is copied here; what
 * is kept is copied by the caller (strings are new JS strings; raw ranges see raw-span.ts).
 */

/** The bytes are not a well-formed protobuf message. */
export class WireFormatError extends Error {
  override name = 'WireFormatError';
}

/** Protobuf wire types. */
export const WireType = { VARINT: 0, FIXED64: 1, LENGTH: 2, START_GROUP: 3, END_GROUP: 4, FIXED32: 5 } as const;

const WIRE_TYPE_NAMES = ['varint', 'fixed64', 'length-delimited', 'start-group', 'end-group', 'fixed32', '6', '7'];

export function wireTypeName(wireType: number): string {
  return WIRE_TYPE_NAMES[wireType] ?? String(wireType);
}

const TWO_32 = 2 ** 32;

export class WireReader {
  readonly buf: Buffer;
  pos: number;
  /** End of the message being read; narrowed while a nested message is read. */
  end: number;

  constructor(bytes: Uint8Array) {
    this.buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.end = bytes.byteLength;
  }

  get more(): boolean {
    return this.pos < this.end;
  }

  /** A varint of up to 32 bits (tags, lengths, enums, uint32); larger values are truncated as protobuf does. */
  uint32(): number {
    const { buf } = this;
    let pos = this.pos;
    if (pos >= this.end) throw this.truncated();
    let byte = buf[pos++];
    let value = byte & 0x7f;
    if (byte >= 0x80) {
      let shift = 7;
      do {
        if (pos >= this.end) throw this.truncated();
        byte = buf[pos++]!;
        if (shift < 32) value |= (byte & 0x7f) << shift;
        shift += 7;
        if (shift > 70) throw new WireFormatError(`varint longer than 10 bytes at offset ${this.pos}`);
      } while (byte >= 0x80);
    }
    this.pos = pos;
    return value >>> 0;
  }

  /** A 64-bit varint as two's complement: a number when safe, else a bigint. */
  int64(): number | bigint {
    const start = this.pos;
    let low = 0;
    let high = 0;
    let shift = 0;
    let byte: number;
    do {
      if (this.pos >= this.end) throw this.truncated();
      if (shift > 63) throw new WireFormatError(`varint longer than 10 bytes at offset ${start}`);
      byte = this.buf[this.pos++]!;
      if (shift < 28) low |= (byte & 0x7f) << shift;
      else if (shift === 28) {
        low |= (byte & 0x0f) << 28;
        high |= (byte & 0x7f) >> 4;
      } else high |= (byte & 0x7f) << (shift - 32);
      shift += 7;
    } while (byte >= 0x80);
    low >>>= 0;
    high |= 0;
    // Within ±(2^53 − 1) a number is exact; beyond, a bigint (as anyValueToPlain does).
    if (high >= 0 && high < 0x200000) return high * TWO_32 + low;
    if (high < 0 && high >= -0x200000) {
      const value = high * TWO_32 + low;
      if (value >= Number.MIN_SAFE_INTEGER) return value;
    }
    return BigInt.asIntN(64, (BigInt(high >>> 0) << 32n) | BigInt(low));
  }

  /** Skips a varint. */
  skipVarint(): void {
    for (let count = 0; count < 10; count += 1) {
      if (this.pos >= this.end) throw this.truncated();
      if (this.buf[this.pos++] < 0x80) return;
    }
    throw new WireFormatError(`varint longer than 10 bytes at offset ${this.pos - 10}`);
  }

  bool(): boolean {
    const start = this.pos;
    this.skipVarint();
    for (let index = start; index < this.pos; index += 1) if ((this.buf[index] & 0x7f) !== 0) return true;
    return false;
  }

  /** A fixed64 as an unsigned bigint. */
  fixed64(): bigint {
    if (this.pos + 8 > this.end) throw this.truncated();
    const value = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return value;
  }

  fixed32(): number {
    if (this.pos + 4 > this.end) throw this.truncated();
    const value = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return value;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw this.truncated();
    const value = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return value;
  }

  /** Reads a length prefix and returns where the range ends; `pos` is at its start. */
  lengthEnd(): number {
    const length = this.uint32();
    const end = this.pos + length;
    if (end > this.end) throw new WireFormatError(`length ${length} at offset ${this.pos} runs past the end of its message (${this.end})`);
    return end;
  }

  /** A length-delimited UTF-8 string (invalid sequences become U+FFFD, as protobufjs reads them). */
  string(): string {
    const end = this.lengthEnd();
    const value = end === this.pos ? '' : this.buf.toString('utf8', this.pos, end);
    this.pos = end;
    return value;
  }

  /** Skips a field of `wireType` (groups are not part of OTLP and are refused). */
  skip(wireType: number): void {
    switch (wireType) {
      case WireType.VARINT:
        this.skipVarint();
        return;
      case WireType.FIXED64:
        if (this.pos + 8 > this.end) throw this.truncated();
        this.pos += 8;
        return;
      case WireType.LENGTH:
        this.pos = this.lengthEnd();
        return;
      case WireType.FIXED32:
        if (this.pos + 4 > this.end) throw this.truncated();
        this.pos += 4;
        return;
      default:
        throw new WireFormatError(`wire type ${wireTypeName(wireType)} at offset ${this.pos} is not used by OTLP`);
    }
  }

  private truncated(): WireFormatError {
    return new WireFormatError(`message truncated at offset ${this.pos} (ends at ${this.end})`);
  }
}
