/**
 * Checks a message the collector forwards as it came without reading it (a span's events, links
 * and status, an instrumentation scope, a resource's entity refs): every field the schema knows
 * has its declared wire type, every length stays within its message, strings are UTF-8, nesting
 * is bounded, and each message and repeated item is counted against the entry budget. A body that
 * passes decodes in any conformant reader, so forwarding its bytes cannot make a downstream refuse
 * a batch. Unknown fields are skipped (protobuf readers keep or drop them).
 */
import { isUtf8 } from 'node:buffer';
import protobuf from 'protobufjs';
import { EntryBudgetError, MAX_NESTING, type EntryCounter } from './entry-budget';
import { WireFormatError, WireType, wireTypeName, type WireReader } from './wire-reader';

interface FieldPlan {
  readonly name: string;
  readonly wireType: number;
  /** The message type of a message field. */
  readonly message?: protobuf.Type;
  readonly isString: boolean;
  /** A varint of 64 bits (int64, uint64, sint64); other varints are 32-bit values. */
  readonly varint64: boolean;
  /** Counted as an entry (a message, or an item of a repeated field). */
  readonly entry: boolean;
}

const plans = new WeakMap<protobuf.Type, Map<number, FieldPlan>>();

/** Each field of `type` by number: the wire type its declared type is written with. */
export function planOf(type: protobuf.Type): Map<number, FieldPlan> {
  let plan = plans.get(type);
  if (plan !== undefined) return plan;
  plan = new Map();
  for (const field of type.fieldsArray) {
    const resolved = field.resolve().resolvedType;
    const message = resolved instanceof protobuf.Type ? resolved : undefined;
    let wireType: number;
    if (message !== undefined || field.type === 'string' || field.type === 'bytes') wireType = WireType.LENGTH;
    else if (field.type === 'double' || field.type === 'fixed64' || field.type === 'sfixed64') wireType = WireType.FIXED64;
    else if (field.type === 'float' || field.type === 'fixed32' || field.type === 'sfixed32') wireType = WireType.FIXED32;
    else wireType = WireType.VARINT;
    plan.set(field.id, {
      name: `${type.name}.${field.name}`,
      wireType,
      ...(message !== undefined ? { message } : {}),
      isString: field.type === 'string',
      varint64: field.type === 'int64' || field.type === 'uint64' || field.type === 'sint64',
      entry: message !== undefined || field.repeated,
    });
  }
  plans.set(type, plan);
  return plan;
}

/** A known field arrived with another wire type than its declared type's. */
export function wrongWireType(name: string, number: number, wireType: number, expected: number): WireFormatError {
  return new WireFormatError(`${name} (field ${number}) has wire type ${wireTypeName(wireType)}; ${wireTypeName(expected)} expected`);
}

/** What a check found that does not make the message unusable. */
export interface CheckFindings {
  /** A string field is not valid UTF-8 (the span is re-encoded with U+FFFD in its place). */
  invalidUtf8: boolean;
}

/**
 * Checks the message of `type` from `reader.pos` to `reader.end`, leaving `reader.pos` at its end.
 * Throws {@link WireFormatError} or {@link EntryBudgetError}.
 */
export function checkMessage(reader: WireReader, type: protobuf.Type, entries: EntryCounter, findings: CheckFindings, depth: number): void {
  if (depth > MAX_NESTING) throw new EntryBudgetError(`request nests messages deeper than ${MAX_NESTING} levels`);
  const plan = planOf(type);
  while (reader.pos < reader.end) {
    const tag = reader.tag();
    const number = tag >>> 3;
    const wireType = tag & 7;
    const field = plan.get(number);
    if (field === undefined) {
      reader.skip(wireType);
      continue;
    }
    if (wireType !== field.wireType) throw wrongWireType(field.name, number, wireType, field.wireType);
    if (field.entry) entries.add();
    if (field.message !== undefined) {
      const end = reader.lengthEnd();
      const outer = reader.end;
      reader.end = end;
      checkMessage(reader, field.message, entries, findings, depth + 1);
      reader.end = outer;
    } else if (field.isString) {
      const end = reader.lengthEnd();
      if (!findings.invalidUtf8 && end > reader.pos && !isUtf8(reader.buf.subarray(reader.pos, end))) findings.invalidUtf8 = true;
      reader.pos = end;
    } else skipKnownField(reader, field, number, wireType);
  }
}

/** Skips a field a reader does not read itself: unknown, or known to `plan` (by its declared width). */
export function skipField(reader: WireReader, tag: number, plan: Map<number, FieldPlan>): void {
  const field = plan.get(tag >>> 3);
  if (field === undefined) reader.skip(tag & 7);
  else skipKnownField(reader, field, tag >>> 3, tag & 7);
}

/** Skips a field the schema knows (refused when its wire type is another), its varint by its width. */
export function skipKnownField(reader: WireReader, field: FieldPlan, number: number, wireType: number): void {
  if (wireType !== field.wireType) throw wrongWireType(field.name, number, wireType, field.wireType);
  if (wireType === WireType.VARINT && !field.varint64) reader.varint32();
  else reader.skip(wireType);
}
