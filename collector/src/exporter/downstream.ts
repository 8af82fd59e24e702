/**
 * One downstream (Jaeger over OTLP/HTTP, or Zipkin): a queue of span batches, sent one request at
 * a time, in order. A failed send is retried — network errors, timeouts, 429, 502, 503 and 504, as
 * the OTLP specification lists them — with exponential backoff, or after the Retry-After the
 * downstream gave when that is longer; other answers are final. Nothing leaves the queue without being counted:
 * delivered, refused by the downstream, given up after `maxElapsedMs` of retries, or cut off at
 * shutdown; each drop is also reported through `onProblem`.
 */
import { backoffDelayMs, withJitter } from '@request-budget/core';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CollectedSpan } from '../otlp/otlp-model';

export type DropReason = 'downstream_rejected' | 'downstream_partial' | 'retries_exhausted' | 'shutdown';

export interface EncodedBatch {
  readonly body: Uint8Array;
  readonly contentType: string;
}

export interface DownstreamOptions {
  /** `otlp` or `zipkin`: metric label and log prefix. */
  readonly name: string;
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly encode: (spans: readonly CollectedSpan[]) => EncodedBatch;
  /** Spans the downstream says it refused in a successful answer (OTLP partial success). */
  readonly rejectedIn?: (response: Response, body: Uint8Array) => number;
  readonly maxBatchSpans: number;
  readonly requestTimeoutMs: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxElapsedMs: number;
  readonly onForwarded: (spans: number) => void;
  readonly onRetry: () => void;
  readonly onDropped: (spans: number, reason: DropReason) => void;
  readonly onProblem: (message: string) => void;
}

interface Batch {
  readonly spans: CollectedSpan[];
  sealed: boolean;
}

const RETRYABLE = new Set([429, 502, 503, 504]);
/** Longest Retry-After honoured: a downstream asking for more is retried after this. */
const MAX_RETRY_AFTER_MS = 300_000;

export class Downstream {
  readonly name: string;
  private readonly options: DownstreamOptions;
  private readonly batches: Batch[] = [];
  private queued = 0;
  private running: Promise<void> | undefined;
  private readonly stopController = new AbortController();
  private backoffUntilMs = 0;
  private failing = false;

  constructor(options: DownstreamOptions) {
    this.name = options.name;
    this.options = options;
  }

  /** Spans queued or being sent. */
  get depth(): number {
    return this.queued;
  }

  /** How long until the next retry, when the downstream is failing (0 otherwise). */
  get retryInMs(): number {
    return Math.max(0, this.backoffUntilMs - Date.now());
  }

  enqueue(spans: readonly CollectedSpan[]): void {
    if (spans.length === 0) return;
    if (this.stopController.signal.aborted) {
      this.options.onDropped(spans.length, 'shutdown');
      return;
    }
    for (const span of spans) {
      let last = this.batches.at(-1);
      if (last === undefined || last.sealed || last.spans.length >= this.options.maxBatchSpans) this.batches.push((last = { spans: [], sealed: false }));
      last.spans.push(span);
    }
    this.queued += spans.length;
    // On a later turn: traces flushed together go out together.
    this.running ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.run());
  }

  /**
   * Waits until everything queued is sent, or until `deadlineMs` (epoch ms); what is left then is
   * dropped, counted and reported. Later enqueues are dropped as `shutdown`.
   */
  async drain(deadlineMs: number): Promise<void> {
    const remaining = deadlineMs - Date.now();
    const timedOut = Symbol('timeout');
    const outcome = this.running === undefined ? undefined : await Promise.race([this.running, sleep(Math.max(0, remaining), timedOut, { ref: false })]);
    this.stopController.abort();
    if (outcome === timedOut) await this.running;
    if (this.queued > 0) {
      const left = this.queued;
      this.batches.length = 0;
      this.queued = 0;
      this.options.onDropped(left, 'shutdown');
      this.options.onProblem(`${this.name}: shutdown deadline reached with ${left} span(s) not delivered to ${this.options.url}; dropped`);
    }
  }

  private async run(): Promise<void> {
    try {
      while (this.batches.length > 0 && !this.stopController.signal.aborted) {
        const batch = this.batches[0];
        batch.sealed = true;
        const delivered = await this.deliver(batch.spans);
        if (!delivered) return; // stopped mid-retry: drain() counts what is left
        this.batches.shift();
        this.queued -= batch.spans.length;
      }
    } finally {
      this.running = undefined;
    }
  }

  /** Sends one batch until it is delivered or given up (true), or the downstream is stopped (false). */
  private async deliver(spans: CollectedSpan[]): Promise<boolean> {
    const { options } = this;
    let encoded: EncodedBatch;
    try {
      encoded = options.encode(spans);
    } catch (error) {
      options.onDropped(spans.length, 'downstream_rejected');
      options.onProblem(`${this.name}: could not encode ${spans.length} span(s): ${describe(error)}; dropped`);
      return true;
    }
    const firstAttemptMs = Date.now();
    for (let attempt = 1; ; attempt += 1) {
      const signal = this.stopController.signal;
      if (signal.aborted) return false;
      let problem: string;
      let retryAfterMs: number | undefined;
      try {
        const response = await fetch(options.url, {
          method: 'POST',
          headers: { ...options.headers, 'content-type': encoded.contentType },
          body: encoded.body,
          signal: AbortSignal.any([signal, AbortSignal.timeout(options.requestTimeoutMs)]),
        });
        const body = new Uint8Array(await response.arrayBuffer());
        if (response.ok) {
          const rejected = Math.min(
            spans.length,
            Math.max(
              0,
              safe(() => options.rejectedIn?.(response, body) ?? 0),
            ),
          );
          if (rejected > 0) {
            options.onDropped(rejected, 'downstream_partial');
            options.onProblem(`${this.name}: ${options.url} refused ${rejected} of ${spans.length} span(s) (partial success)`);
          }
          options.onForwarded(spans.length - rejected);
          this.recovered();
          return true;
        }
        problem = `HTTP ${response.status}${excerpt(body)}`;
        if (!RETRYABLE.has(response.status)) {
          options.onDropped(spans.length, 'downstream_rejected');
          options.onProblem(`${this.name}: ${options.url} refused ${spans.length} span(s) with ${problem}; dropped (not retryable)`);
          this.recovered();
          return true;
        }
        retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
      } catch (error) {
        if (signal.aborted) return false;
        problem = describe(error);
      }
      const backoffMs = withJitter(backoffDelayMs(attempt, options.initialBackoffMs, options.maxBackoffMs));
      // The longer of the two, as otelcol's exporters wait: a Retry-After of 0 (or of a date
      // already passed) must not turn the retries into a tight loop.
      const delayMs = retryAfterMs !== undefined ? Math.max(backoffMs, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS)) : backoffMs;
      if (Date.now() + delayMs - firstAttemptMs > options.maxElapsedMs) {
        options.onDropped(spans.length, 'retries_exhausted');
        options.onProblem(
          `${this.name}: gave up on ${spans.length} span(s) after ${attempt} attempt(s) over ${Date.now() - firstAttemptMs} ms to ${options.url}: ${problem}; dropped`,
        );
        this.backoffUntilMs = 0;
        return true;
      }
      options.onRetry();
      if (!this.failing)
        options.onProblem(`${this.name}: could not send ${spans.length} span(s) to ${options.url}: ${problem}; retrying with backoff (spans stay queued)`);
      this.failing = true;
      this.backoffUntilMs = Date.now() + delayMs;
      try {
        await sleep(delayMs, undefined, { signal, ref: false });
      } catch {
        return false; // stopped
      }
    }
  }

  private recovered(): void {
    if (this.failing) this.options.onProblem(`${this.name}: ${this.options.url} accepts spans again`);
    this.failing = false;
    this.backoffUntilMs = 0;
  }
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** ±20 %, so that several collectors do not retry in step. */
function excerpt(body: Uint8Array): string {
  if (body.length === 0) return '';
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength)
    .toString('utf8', 0, Math.min(body.length, 200))
    .replace(/[^\x20-\x7e]+/g, ' ')
    .trim();
  return text === '' ? '' : `: ${text}`;
}

function safe(read: () => number): number {
  try {
    return read();
  } catch {
    return 0;
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'TimeoutError') return 'timed out';
  const cause = (error as Error & { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? error.message;
}
