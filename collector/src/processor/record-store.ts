/**
 * The records of the spans forwarded as soon as they came (spans that cannot be roots: mayBeRoot),
 * kept for their traces' judgement (span-facts.ts). Per span, RECORD_SLOT_BYTES in one buffer
 * shared by every held trace — ids and times as 32-bit halves, kind, flags, what the span adds to
 * a cost, and the strings it shares with other records as indexes (its process key, its query's
 * fingerprint, the operation it reports: a database system or an HTTP method; interned-strings.ts,
 * each string charged once) — and one reference, an HTTP call's URL (charged to the record): no
 * object of its own for the garbage collector, and nothing per trace but where its records start
 * and end. A trace's records are linked in the order they came; slots freed by a
 * flushed trace are reused, one by one (a trace held long pins its own slots only). The store grows
 * a chunk of CHUNK_SLOTS at a time (nothing is copied), from none; it lets all but one go once it
 * is empty, and keeps its largest size while records stay (charged in byteCount all the while).
 */
import type { CostContribution, OperationIdentity } from '@request-budget/core';
import type { CollectedSpan } from '../otlp/otlp-model';
import { readSpanFields, SpanWireFields } from '../otlp/received-span';
import { idKey, type SpanCost, type SpanCostReader, type SpanFacts } from './span-facts';
import { InternedStrings, NO_STRING } from './interned-strings';

/** A record's slot: 22 32-bit words (words 12 to 17 as three doubles; word 21 unused, for their alignment). */
const WORDS = 22;
/** References per slot: an HTTP call's URL (the shared strings are kept as indexes: interned-strings.ts). */
const REFS = 1;
/**
 * A record's slot: its 88 bytes in the shared buffer, its reference, and its share of what else a
 * chunk holds (calibrated in decode-budget.test.ts: what V8 and the ArrayBuffers give back).
 */
export const RECORD_SLOT_BYTES = WORDS * 4 + REFS * 4 + 12;
/**
 * A record's own string (an HTTP call's URL) beside its characters: its header. The strings records
 * share are charged once each (INTERNED_STRING_BYTES).
 */
export const STRING_BYTES = 16;

/** No record: the end of a trace's list, or of the free list. */
export const NO_RECORD = -1;

/** Slots per chunk: 88 KiB of buffer (the store keeps one chunk once it has had a record: small beside the smallest --memory-limit). */
export const CHUNK_SLOTS = 1024;

// Word offsets in a slot. Doubles are at word 12, 14 and 16 (double index 6, 7 and 8 of a slot).
const SPAN_ID = 0; // hi, lo
const PARENT_ID = 2; // hi, lo
const START = 4; // hi, lo
const END = 6; // hi, lo
const KIND = 8;
const FLAGS = 9;
const BITS = 10;
const NEXT = 11;
const ROWS = 6; // double
const BYTES = 7; // double
const ENQUEUED = 8; // double
// Indexes of shared strings (InternedStrings): the process key; a query's fingerprint; the operation
// it reports: a database system or an HTTP method.
const PROCESS_KEY = 18;
const FINGERPRINT = 19;
const OPERATION = 20;

// BITS: whether the span has a parent; what it contributes; an HTTP call's `timed`.
const HAS_PARENT = 1;
const DB = 2;
const HTTP = 4;
const TIMED_KNOWN = 8;
const TIMED = 16;
const ROWS_KNOWN = 32;
const BYTES_KNOWN = 64;
const ENQUEUED_KNOWN = 128;
const DB_IDENTITY = 256;
const HTTP_IDENTITY = 512;

// Reused for every span read: nothing but the record is kept.
const scratch = new SpanWireFields();

interface Chunk {
  readonly words: Uint32Array;
  readonly doubles: Float64Array;
  /** Per slot (REFS): an HTTP call's URL. */
  readonly refs: (string | undefined)[];
}

function newChunk(): Chunk {
  const words = new Uint32Array(CHUNK_SLOTS * WORDS);
  return { words, doubles: new Float64Array(words.buffer), refs: new Array<string | undefined>(CHUNK_SLOTS * REFS).fill(undefined) };
}

export class RecordStore {
  private readonly chunks: Chunk[] = [];
  // Slots below `used` have been handed out; freed ones are linked from `free`.
  private used = 0;
  private free = NO_RECORD;
  private live = 0;
  // What the records' own strings hold (HTTP calls' URLs).
  private referenced = 0;
  private readonly shared = new InternedStrings();

  /** Records held. */
  get count(): number {
    return this.live;
  }

  /** Memory the store takes, free slots included, and the strings its records refer to. */
  get bytes(): number {
    return this.chunks.length * CHUNK_SLOTS * RECORD_SLOT_BYTES + this.referenced + this.shared.bytes;
  }

  /**
   * Reads a span's record from its bytes (about to be forwarded: they are not kept) and links it
   * after `tail` (NO_RECORD: the first of its trace). Returns its slot.
   */
  add(span: CollectedSpan, costs: SpanCostReader, tail: number): number {
    const fields = readSpanFields(span.raw, scratch);
    const cost = costs.costOf(span.kind, span.name, fields.attributes);
    fields.attributes = {};
    const slot = this.allocate();
    // A record that cannot be read lets go of its slot and of the strings it holds already.
    try {
      const { words, doubles, refs } = this.chunks[Math.floor(slot / CHUNK_SLOTS)];
      const inChunk = slot % CHUNK_SLOTS;
      const at = inChunk * WORDS;
      const atDouble = inChunk * (WORDS / 2);
      words[at + SPAN_ID] = fields.spanIdHi;
      words[at + SPAN_ID + 1] = fields.spanIdLo;
      words[at + PARENT_ID] = fields.parentHi;
      words[at + PARENT_ID + 1] = fields.parentLo;
      words[at + START] = fields.startHi;
      words[at + START + 1] = fields.startLo;
      words[at + END] = fields.endHi;
      words[at + END + 1] = fields.endLo;
      words[at + KIND] = span.kind;
      words[at + FLAGS] = span.flags;
      let bits = span.hasParent ? HAS_PARENT : 0;
      const contribution = cost?.contribution;
      if (contribution?.type === 'db') {
        bits |= DB;
        if (contribution.rows !== undefined) {
          bits |= ROWS_KNOWN;
          doubles[atDouble + ROWS] = contribution.rows;
        }
        if (contribution.bytes !== undefined) {
          bits |= BYTES_KNOWN;
          doubles[atDouble + BYTES] = contribution.bytes;
        }
      } else if (contribution?.type === 'http_client') {
        bits |= HTTP;
        if (contribution.timed !== undefined) bits |= TIMED_KNOWN | (contribution.timed ? TIMED : 0);
      }
      if (cost?.enqueued !== undefined) {
        bits |= ENQUEUED_KNOWN;
        doubles[atDouble + ENQUEUED] = cost.enqueued;
      }
      const identity = cost?.identity;
      if (identity?.type === 'db') bits |= DB_IDENTITY;
      else if (identity?.type === 'http_client') bits |= HTTP_IDENTITY;
      words[at + BITS] = bits;
      words[at + NEXT] = NO_RECORD >>> 0;
      const { shared } = this;
      words[at + PROCESS_KEY] = shared.hold(span.origin.resource.processKey);
      // A query's fingerprint, whatever the identity (a span may carry a query and an HTTP method).
      words[at + FINGERPRINT] = shared.hold(cost?.fingerprint);
      // No object per identity: its strings, the identity made again when judged.
      words[at + OPERATION] = shared.hold(identity === undefined ? undefined : identity.type === 'db' ? identity.system : identity.method);
      const url = identity?.type === 'http_client' ? identity.url : undefined;
      refs[inChunk * REFS] = url;
      if (url !== undefined) this.referenced += STRING_BYTES + url.length;
    } catch (error) {
      this.release(slot);
      throw error;
    }
    if (tail !== NO_RECORD) this.setNext(tail, slot);
    return slot;
  }

  /** The records linked from `head`, as facts in the order they came; their slots are freed. */
  take(head: number): SpanFacts[] {
    const facts: SpanFacts[] = [];
    for (let slot = head; slot !== NO_RECORD;) {
      facts.push(this.factsAt(slot));
      const next = this.nextOf(slot);
      this.release(slot);
      slot = next;
    }
    if (this.live === 0 && this.chunks.length > 1) this.startOver();
    return facts;
  }

  private nextOf(slot: number): number {
    const next = this.chunks[Math.floor(slot / CHUNK_SLOTS)].words[(slot % CHUNK_SLOTS) * WORDS + NEXT];
    return next === NO_RECORD >>> 0 ? NO_RECORD : next;
  }

  private setNext(slot: number, next: number): void {
    this.chunks[Math.floor(slot / CHUNK_SLOTS)].words[(slot % CHUNK_SLOTS) * WORDS + NEXT] = next >>> 0;
  }

  private factsAt(slot: number): SpanFacts {
    const { words, doubles, refs } = this.chunks[Math.floor(slot / CHUNK_SLOTS)];
    const inChunk = slot % CHUNK_SLOTS;
    const at = inChunk * WORDS;
    const atDouble = inChunk * (WORDS / 2);
    const bits = words[at + BITS];
    const hasParent = (bits & HAS_PARENT) !== 0;
    const { shared } = this;
    const fingerprint = shared.get(words[at + FINGERPRINT]);
    let contribution: CostContribution | undefined;
    if ((bits & DB) !== 0)
      contribution = {
        type: 'db',
        statement: fingerprint!,
        rows: (bits & ROWS_KNOWN) !== 0 ? doubles[atDouble + ROWS] : undefined,
        bytes: (bits & BYTES_KNOWN) !== 0 ? doubles[atDouble + BYTES] : undefined,
      };
    else if ((bits & HTTP) !== 0) contribution = { type: 'http_client', timed: (bits & TIMED_KNOWN) !== 0 ? (bits & TIMED) !== 0 : undefined };
    const identity: OperationIdentity | undefined =
      (bits & DB_IDENTITY) !== 0
        ? { type: 'db', system: shared.get(words[at + OPERATION])! }
        : (bits & HTTP_IDENTITY) !== 0
          ? { type: 'http_client', method: shared.get(words[at + OPERATION])!, url: refs[inChunk * REFS] }
          : undefined;
    const enqueued = (bits & ENQUEUED_KNOWN) !== 0 ? doubles[atDouble + ENQUEUED] : undefined;
    const cost: SpanCost | undefined =
      contribution === undefined && identity === undefined && enqueued === undefined ? undefined : { contribution, fingerprint, identity, enqueued };
    return {
      spanId: idKey(words[at + SPAN_ID], words[at + SPAN_ID + 1]),
      parentSpanId: hasParent ? idKey(words[at + PARENT_ID], words[at + PARENT_ID + 1]) : '',
      hasParent,
      flags: words[at + FLAGS],
      kind: words[at + KIND],
      markedRoot: false,
      processKey: shared.get(words[at + PROCESS_KEY])!,
      startHi: words[at + START],
      startLo: words[at + START + 1],
      endHi: words[at + END],
      endLo: words[at + END + 1],
      cost,
      span: undefined,
    };
  }

  private allocate(): number {
    this.live += 1;
    if (this.free !== NO_RECORD) {
      const slot = this.free;
      this.free = this.nextOf(slot);
      return slot;
    }
    if (this.used === this.chunks.length * CHUNK_SLOTS) this.chunks.push(newChunk());
    return this.used++;
  }

  private release(slot: number): void {
    this.live -= 1;
    // The strings go at once: a fingerprint or a URL is not kept by a free slot.
    const { words, refs } = this.chunks[Math.floor(slot / CHUNK_SLOTS)];
    const inChunk = slot % CHUNK_SLOTS;
    const at = inChunk * WORDS;
    const { shared } = this;
    shared.release(words[at + PROCESS_KEY]);
    shared.release(words[at + FINGERPRINT]);
    shared.release(words[at + OPERATION]);
    words[at + PROCESS_KEY] = words[at + FINGERPRINT] = words[at + OPERATION] = NO_STRING;
    const url = refs[inChunk * REFS];
    if (url !== undefined) this.referenced -= STRING_BYTES + url.length;
    refs[inChunk * REFS] = undefined;
    this.setNext(slot, this.free);
    this.free = slot;
  }

  private startOver(): void {
    this.chunks.length = 1;
    this.used = 0;
    this.free = NO_RECORD;
  }
}
