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

  /**
   * A tag or a length: a varint of 32 bits at most, in 5 bytes at most. Longer or larger ones are
   * refused: protobufjs reads 5 bytes of a 32-bit varint and would lose its place in what is
   * forwarded, and Go's readers take the bits beyond 32 that a truncated read would drop.
   */
  uint32(): number {
    const { buf } = this;
    const start = this.pos;
    if (start >= this.end) throw this.truncated();
    let byte = buf[start];
    if (byte < 0x80) {
      this.pos = start + 1;
      return byte;
    }
    let value = byte & 0x7f;
    let pos = start + 1;
    for (let shift = 7; ; shift += 7) {
      if (pos >= this.end) throw this.truncated();
      byte = buf[pos++]!;
      if (shift === 28) {
        if (byte > 0x0f) throw new WireFormatError(`varint at offset ${start} is longer than 32 bits`);
        value = (value | (byte << 28)) >>> 0;
        break;
      }
      value |= (byte & 0x7f) << shift;
      if (byte < 0x80) break;
    }
    this.pos = pos;
    return value >>> 0;
  }

  /** A field tag (field number and wire type); field number 0 is refused (Go's readers refuse it). */
  tag(): number {
    const start = this.pos;
    const tag = this.uint32();
    if (tag >>> 3 === 0) throw new WireFormatError(`field number 0 at offset ${start}`);
    return tag;
  }

  /**
   * A 32-bit value field (enum, int32, uint32, bool), its low 32 bits: 5 bytes at most, or 10 for a
   * negative int32 written sign-extended — the two lengths every reader takes alike.
   */
  varint32(): number {
    const { buf } = this;
    const start = this.pos;
    let value = 0;
    let pos = start;
    for (let shift = 0; shift < 35; shift += 7) {
      if (pos >= this.end) throw this.truncated();
      const byte = buf[pos++];
      value |= (byte & 0x7f) << shift;
      if (byte < 0x80) {
        this.pos = pos;
        return value >>> 0;
      }
    }
    // Five more: four with the continuation bit, the tenth 0 or 1.
    for (let count = 0; count < 5; count += 1) {
      if (pos >= this.end) throw this.truncated();
      const byte = buf[pos++];
      if (count < 4 ? byte < 0x80 : byte > 0x01)
        throw new WireFormatError(`varint at offset ${start} of a 32-bit field is neither 5 bytes at most nor 10 (a negative int32)`);
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
      if (shift === 63 && byte > 0x01) throw new WireFormatError(`varint at offset ${start} is larger than 64 bits`);
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

  /** Skips a 64-bit varint: 10 bytes at most, the tenth 0 or 1. */
  skipVarint(): void {
    const start = this.pos;
    for (let count = 0; count < 10; count += 1) {
      if (this.pos >= this.end) throw this.truncated();
      const byte = this.buf[this.pos++];
      if (count === 9 && byte > 0x01) throw new WireFormatError(`varint at offset ${start} is larger than 64 bits`);
      if (byte < 0x80) return;
    }
    throw new WireFormatError(`varint longer than 10 bytes at offset ${start}`);
  }

  /** A bool: a 32-bit varint (as protobufjs reads it), true when not 0. */
  bool(): boolean {
    return this.varint32() !== 0;
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
