/**
 * The running cost of one request (or job): counters plus a bounded count per statement
 * fingerprint. Pure arithmetic, no SDK types, so the collector reuses it on OTLP spans.
 */
import {
  COST_DB_BYTES,
  COST_DB_QUERIES,
  COST_DB_REPEATED_COUNT,
  COST_DB_REPEATED_STATEMENT,
  COST_DB_ROWS,
  COST_DB_TIME_MS,
  COST_HTTP_CLIENT_CALLS,
  COST_HTTP_CLIENT_TIME_MS,
  COST_HTTP_CLIENT_UNTIMED,
  COST_JOBS_ENQUEUED,
} from './attributes';
import type { CostContribution } from './span-classifier';
import { FingerprintCache } from './fingerprint';

/**
 * Distinct statement fingerprints tracked per request. Beyond it, the least repeated one makes
 * room (Space-Saving): a loop that starts after many distinct statements is still found.
 */
export const MAX_FINGERPRINTS_PER_TALLY = 128;

/** The most repeated statement of a request. */
export interface RepeatedStatement {
  readonly fingerprint: string;
  readonly count: number;
}

/** Attribute values written by the tally: all numbers and strings. */
export type CostAttributes = Record<string, string | number>;

/**
 * The running cost of one request or job. Counters are public for reading; `add` is the only
 * writer.
 */
export class CostTally {
  queries = 0;
  dbTimeMs = 0;
  rows = 0;
  /** Wire bytes of the rows (see `cost.db.bytes`); a figure only while {@link bytesComplete}. */
  dbBytes = 0;
  /** False once an operation reported rows without their bytes: `cost.db.bytes` is then not written. */
  bytesComplete = true;
  httpClientCalls = 0;
  httpClientTimeMs = 0;
  httpClientUntimed = 0;
  /** Jobs or messages enqueued (see enqueue-classifier.ts). */
  jobsEnqueued = 0;
  private readonly countsByFingerprint = new Map<string, number>();

  constructor(private readonly fingerprints: FingerprintCache) {}

  /**
   * Adds a classified child span that lasted `durationMs`. `fingerprint`: its statement's, when the
   * caller has worked it out already (else the tally does).
   */
  add(contribution: CostContribution, durationMs: number, fingerprint?: string): void {
    if (contribution.type === 'db') {
      this.queries += 1;
      this.dbTimeMs += durationMs;
      if (contribution.rows !== undefined) this.rows += contribution.rows;
      if (contribution.bytes !== undefined) this.dbBytes += contribution.bytes;
      else if (contribution.rows !== undefined) this.bytesComplete = false;
      this.countStatement(fingerprint ?? this.fingerprints.get(contribution.statement));
    } else {
      this.httpClientCalls += 1;
      this.httpClientTimeMs += durationMs;
      if (contribution.timed === false) this.httpClientUntimed += 1;
    }
  }

  /** Adds `messages` jobs or messages put on a queue by one enqueue span. */
  addEnqueued(messages: number): void {
    this.jobsEnqueued += messages;
  }

  /** The statement that ran most often (first seen wins a tie), or undefined with no queries. */
  mostRepeated(): RepeatedStatement | undefined {
    let bestFingerprint: string | undefined;
    let bestCount = 0;
    for (const [fingerprint, count] of this.countsByFingerprint) {
      if (count > bestCount) {
        bestFingerprint = fingerprint;
        bestCount = count;
      }
    }
    return bestFingerprint === undefined ? undefined : { fingerprint: bestFingerprint, count: bestCount };
  }

  /** Every statement fingerprint with its count, most repeated first. */
  statements(): RepeatedStatement[] {
    return [...this.countsByFingerprint].map(([fingerprint, count]) => ({ fingerprint, count })).sort((a, b) => b.count - a.count);
  }

  /**
   * Writes the DB, HTTP-client and enqueue part of the attribute contract through `target.setAttribute`
   * (a span), without building an intermediate object: this runs once per request.
   */
  writeAttributes(target: { setAttribute(key: string, value: string | number): unknown }): void {
    target.setAttribute(COST_DB_QUERIES, this.queries);
    target.setAttribute(COST_DB_TIME_MS, roundMs(this.dbTimeMs));
    target.setAttribute(COST_DB_ROWS, this.rows);
    if (this.bytesComplete) target.setAttribute(COST_DB_BYTES, this.dbBytes);
    const repeated = this.mostRepeated();
    target.setAttribute(COST_DB_REPEATED_COUNT, repeated?.count ?? 0);
    if (repeated !== undefined) target.setAttribute(COST_DB_REPEATED_STATEMENT, repeated.fingerprint);
    target.setAttribute(COST_HTTP_CLIENT_CALLS, this.httpClientCalls);
    target.setAttribute(COST_HTTP_CLIENT_TIME_MS, roundMs(this.httpClientTimeMs));
    target.setAttribute(COST_HTTP_CLIENT_UNTIMED, this.httpClientUntimed);
    target.setAttribute(COST_JOBS_ENQUEUED, this.jobsEnqueued);
  }

  /** The DB, HTTP-client and enqueue part of the attribute contract, as an object. */
  toAttributes(): CostAttributes {
    const attributes: CostAttributes = {
      [COST_DB_QUERIES]: this.queries,
      [COST_DB_TIME_MS]: roundMs(this.dbTimeMs),
      [COST_DB_ROWS]: this.rows,
      [COST_DB_REPEATED_COUNT]: 0,
      [COST_HTTP_CLIENT_CALLS]: this.httpClientCalls,
      [COST_HTTP_CLIENT_TIME_MS]: roundMs(this.httpClientTimeMs),
      [COST_HTTP_CLIENT_UNTIMED]: this.httpClientUntimed,
      [COST_JOBS_ENQUEUED]: this.jobsEnqueued,
    };
    if (this.bytesComplete) attributes[COST_DB_BYTES] = this.dbBytes;
    const repeated = this.mostRepeated();
    if (repeated !== undefined) {
      attributes[COST_DB_REPEATED_COUNT] = repeated.count;
      attributes[COST_DB_REPEATED_STATEMENT] = repeated.fingerprint;
    }
    return attributes;
  }

  private countStatement(fingerprint: string): void {
    const counts = this.countsByFingerprint;
    const count = counts.get(fingerprint);
    if (count !== undefined) {
      counts.set(fingerprint, count + 1);
    } else if (counts.size < MAX_FINGERPRINTS_PER_TALLY) {
      counts.set(fingerprint, 1);
    } else {
      // Space-Saving: the newcomer inherits the smallest count, plus one. Counts may then
      // overstate a statement by at most that smallest count, never understate a repeat.
      let least: [string, number] | undefined;
      for (const entry of counts) if (least === undefined || entry[1] < least[1]) least = entry;
      counts.delete(least![0]);
      counts.set(fingerprint, least![1] + 1);
    }
  }
}

/** Milliseconds to microsecond precision: enough for DB spans, and stable in tests. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
