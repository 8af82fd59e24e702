/**
 * One downstream (Jaeger over OTLP/HTTP, or Zipkin): a queue of span batches, sent up to
 * `concurrency` requests at a time, in no particular order (a round trip per batch would otherwise
 * cap throughput at one batch per round trip). A batch goes once it is full, or BATCH_LINGER_MS
 * after its first span came: spans arrive a request's worth at a time, and a request per arrival
 * would cost the downstream and the collector more than the spans. A failed send is retried — network errors,
 * timeouts, 429 and every 5xx (a downstream answering 500 while it restarts or is overloaded is
 * no reason to lose spans) — with exponential backoff, or after the Retry-After the downstream
 * gave when that is longer; other answers (4xx) are final. Nothing leaves the queue without being
 * counted: delivered, refused by the downstream, given up after `maxElapsedMs` of retries, or cut
 * off at shutdown; each drop is also reported through `onProblem` (refusals once per interval).
 * With a spool, what is not acknowledged at the shutdown deadline is written to it instead of
 * being cut off, and batches read back from it at start are sent as they were written.
 */
import { backoffDelayMs, withJitter } from '@request-budget/core';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CollectedSpan } from '../otlp/otlp-model';
import { HttpPoster, type PostAnswer } from './http-post';
import { IntervalLog } from './interval-log';
import type { SpooledBatch } from './spool';

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
  readonly rejectedIn?: (response: PostAnswer, body: Uint8Array) => number;
  readonly maxBatchSpans: number;
  /** Requests under way at once. */
  readonly concurrency: number;
  readonly requestTimeoutMs: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxElapsedMs: number;
  /** `spooled`: the spans came from the spool at start (they are not among the spans enqueued). */
  readonly onForwarded: (spans: number, spooled: boolean) => void;
  readonly onRetry: () => void;
  readonly onDropped: (spans: number, reason: DropReason, spooled: boolean) => void;
  readonly onProblem: (message: string) => void;
  /** How often a streak of refusals (4xx) is logged; 10 s unless given. */
  readonly problemIntervalMs?: number;
  /** Where batches not acknowledged at the shutdown deadline are kept; dropped when absent. */
  readonly spool?: { readonly dir: string; save(name: string, endpoint: string, batches: readonly SpooledBatch[]): void };
}

interface Batch {
  /** Empty for a batch read from the spool: it is sent as `encoded`. */
  readonly spans: CollectedSpan[];
  /** Encoded once, on its first attempt (or as read from the spool). */
  encoded?: EncodedBatch;
  /** A batch read from the spool: its span count and what to do once it is delivered or given up. */
  readonly spooled?: { readonly spans: number; readonly settled: (keepFile: boolean) => void };
}

const spanCount = (batch: Batch): number => batch.spooled?.spans ?? batch.spans.length;

/** 429 and 5xx say "not now"; any other refusal would be answered the same way again. */
const isRetryable = (status: number): boolean => status === 429 || (status >= 500 && status <= 599);
/**
 * Longest wait of a batch that is not full. Short beside the trace window's grace period (spans
 * that cannot be roots are forwarded as they come, the roots seconds later), long enough that at a
 * few thousand spans a second batches are hundreds of spans, not one request's worth.
 */
export const BATCH_LINGER_MS = 50;

/** Longest Retry-After honoured: a downstream asking for more is retried after this. */
const MAX_RETRY_AFTER_MS = 300_000;

export class Downstream {
  readonly name: string;
  private readonly options: DownstreamOptions;
  /** Waiting to be sent, oldest first; the last may still be filling. A batch being sent is no longer here. */
  private readonly batches: Batch[] = [];
  /** Being sent or waiting to be retried; left here when stopped, for drain() to spool. */
  private readonly sending = new Set<Batch>();
  /** Spans waiting or being sent. */
  private queued = 0;
  /** One per request under way (each sends batches until none is left). */
  private readonly workers = new Set<Promise<void>>();
  private scheduled = false;
  // When the last batch, not yet full, got its first span; draining: no batch waits.
  private lastFillingSinceMs = 0;
  private lingerTimer: NodeJS.Timeout | undefined;
  private draining = false;
  private readonly stopController = new AbortController();
  private backoffUntilMs = 0;
  private failing = false;
  private readonly refusals: IntervalLog;
  private readonly poster: HttpPoster;

  constructor(options: DownstreamOptions) {
    this.name = options.name;
    this.options = options;
    this.poster = new HttpPoster(options.url, options.concurrency);
    this.refusals = new IntervalLog(options.onProblem, options.problemIntervalMs ?? 10_000);
  }

  /** Where it sends: what names it in the spool. */
  get url(): string {
    return this.options.url;
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
      this.options.onDropped(spans.length, 'shutdown', false);
      return;
    }
    for (const span of spans) {
      let last = this.batches.at(-1);
      if (last === undefined || last.spooled !== undefined || last.spans.length >= this.options.maxBatchSpans) {
        this.batches.push((last = { spans: [] }));
        this.lastFillingSinceMs = performance.now();
      }
      last.spans.push(span);
    }
    this.queued += spans.length;
    this.schedule();
  }

  /**
   * Queues a batch read from the spool at start, counted in `depth`; `settled(false)` once it is
   * delivered or given up, `settled(true)` when shutdown leaves it unsent (its file stays).
   */
  enqueueSpooled(batch: SpooledBatch, settled: (keepFile: boolean) => void): void {
    this.batches.push({ spans: [], encoded: { body: batch.body, contentType: batch.contentType }, spooled: { spans: batch.spans, settled } });
    this.queued += batch.spans;
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    // On a later turn: traces flushed together go out together.
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.startWorkers();
    });
  }

  /** Whether the first batch waiting may go now: full, read from the spool, lingered long enough, or draining. */
  private firstReady(): boolean {
    const first = this.batches[0];
    if (first === undefined) return false;
    if (this.draining || this.batches.length > 1 || first.spooled !== undefined || first.spans.length >= this.options.maxBatchSpans) return true;
    const waitMs = this.lastFillingSinceMs + BATCH_LINGER_MS - performance.now();
    if (waitMs <= 0) return true;
    // Looked at again when its linger is over (or sooner, when it fills).
    this.lingerTimer ??= setTimeout(() => {
      this.lingerTimer = undefined;
      this.startWorkers();
    }, waitMs + 1);
    return false;
  }

  /**
   * Waits until everything queued is sent, or until `deadlineMs` (epoch ms); what is left then is
   * written to the spool when there is one (batches read from it stay there), else dropped, counted
   * and reported. Later enqueues are dropped as `shutdown`.
   */
  async drain(deadlineMs: number): Promise<void> {
    const remaining = deadlineMs - Date.now();
    this.draining = true;
    this.startWorkers();
    await Promise.race([this.sent(), sleep(Math.max(0, remaining), undefined, { ref: false })]);
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    this.stopController.abort();
    // Each worker returns as soon as its request or backoff is aborted.
    await Promise.all(this.workers);
    this.poster.close();
    this.refusals.flush();
    const notDelivered = [...this.sending, ...this.batches];
    // Batches read from the spool stay in their files for the next start.
    for (const batch of notDelivered) batch.spooled?.settled(true);
    const unsent = notDelivered.filter((batch) => batch.spooled === undefined && batch.spans.length > 0);
    this.sending.clear();
    this.batches.length = 0;
    this.queued = 0;
    const left = unsent.reduce((sum, batch) => sum + batch.spans.length, 0);
    if (left === 0) return;
    const { spool } = this.options;
    if (spool !== undefined) {
      try {
        spool.save(
          this.name,
          this.options.url,
          unsent.map((batch) => ({ ...this.encoded(batch), spans: batch.spans.length })),
        );
        return;
      } catch (error) {
        this.options.onDropped(left, 'shutdown', false);
        this.options.onProblem(
          `${this.name}: shutdown deadline reached with ${left} span(s) not delivered to ${this.options.url}; could not write them to the spool ${spool.dir} (${describe(error)}); dropped`,
        );
        return;
      }
    }
    this.options.onDropped(left, 'shutdown', false);
    this.options.onProblem(
      `${this.name}: shutdown deadline reached with ${left} span(s) not delivered to ${this.options.url}; dropped (--spool-dir would keep them on disk and send them at the next start)`,
    );
  }

  /** The batch's request body, encoded on first need; its spans' bytes are not read after. */
  private encoded(batch: Batch): EncodedBatch {
    if (batch.encoded !== undefined) return batch.encoded;
    batch.encoded = this.options.encode(batch.spans);
    for (const span of batch.spans) span.bytesCopied();
    return batch.encoded;
  }

  /** Resolves when nothing is queued or being sent. */
  private async sent(): Promise<void> {
    while (this.queued > 0 && !this.stopController.signal.aborted) {
      if (this.workers.size > 0) await Promise.race(this.workers);
      else await new Promise<void>((resolve) => setImmediate(resolve)); // the workers start on the next turn
    }
  }

  /** Up to `concurrency` workers; each takes a batch at once (synchronously), so this ends. */
  private startWorkers(): void {
    while (this.workers.size < this.options.concurrency && this.firstReady() && !this.stopController.signal.aborted) {
      const worker: Promise<void> = this.work()
        .catch((error: unknown) => this.options.onProblem(`${this.name}: delivery stopped by an unexpected error: ${describe(error)}`))
        .finally(() => this.workers.delete(worker));
      this.workers.add(worker);
    }
  }

  private async work(): Promise<void> {
    while (this.firstReady() && !this.stopController.signal.aborted) {
      const batch = this.batches.shift()!;
      this.sending.add(batch);
      const delivered = await this.deliver(batch);
      if (!delivered) return; // stopped mid-retry: still in `sending`, drain() spools or counts it
      this.sending.delete(batch);
      this.queued -= spanCount(batch);
      batch.spooled?.settled(false);
    }
  }

  /** Sends one batch until it is delivered or given up (true), or the downstream is stopped (false). */
  private async deliver(batch: Batch): Promise<boolean> {
    const { options } = this;
    const count = spanCount(batch);
    const spooled = batch.spooled !== undefined;
    let encoded: EncodedBatch;
    try {
      encoded = this.encoded(batch);
    } catch (error) {
      options.onDropped(count, 'downstream_rejected', spooled);
      options.onProblem(`${this.name}: could not encode ${count} span(s): ${describe(error)}; dropped`);
      return true;
    }
    const firstAttemptMs = Date.now();
    for (let attempt = 1; ; attempt += 1) {
      const signal = this.stopController.signal;
      if (signal.aborted) return false;
      let problem: string;
      let retryAfterMs: number | undefined;
      try {
        const response = await this.poster.post({ ...options.headers, 'content-type': encoded.contentType }, encoded.body, signal, options.requestTimeoutMs);
        const { body } = response;
        if (response.ok) {
          const rejected = Math.min(
            count,
            Math.max(
              0,
              safe(() => options.rejectedIn?.(response, body) ?? 0),
            ),
          );
          if (rejected > 0) {
            options.onDropped(rejected, 'downstream_partial', spooled);
            options.onProblem(`${this.name}: ${options.url} refused ${rejected} of ${count} span(s) (partial success)`);
          }
          options.onForwarded(count - rejected, spooled);
          this.recovered();
          return true;
        }
        // A redirect is not followed (the body would have to be sent again, maybe elsewhere): said as such.
        const location = response.status >= 300 && response.status < 400 ? response.header('location') : undefined;
        problem =
          location !== undefined
            ? `HTTP ${response.status}, a redirect to ${location.slice(0, 200)} (not followed: give the ${this.name} endpoint as that URL)`
            : `HTTP ${response.status}${excerpt(body)}`;
        if (!isRetryable(response.status)) {
          options.onDropped(count, 'downstream_rejected', spooled);
          this.refusals.report(
            `HTTP ${response.status}`,
            count,
            `${this.name}: ${options.url} refused ${count} span(s) with ${problem}; dropped (not retryable)`,
            ({ times, amount }) =>
              `${this.name}: ${options.url} refused ${amount} more span(s) in ${times} request(s) with HTTP ${response.status}; dropped (not retryable) (since the last report)`,
          );
          this.recovered();
          return true;
        }
        retryAfterMs = parseRetryAfter(response.header('retry-after') ?? null);
      } catch (error) {
        if (signal.aborted) return false;
        problem = describe(error);
      }
      const backoffMs = withJitter(backoffDelayMs(attempt, options.initialBackoffMs, options.maxBackoffMs));
      // The longer of the two, as otelcol's exporters wait: a Retry-After of 0 (or of a date
      // already passed) must not turn the retries into a tight loop.
      const delayMs = retryAfterMs !== undefined ? Math.max(backoffMs, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS)) : backoffMs;
      if (Date.now() + delayMs - firstAttemptMs > options.maxElapsedMs) {
        options.onDropped(count, 'retries_exhausted', spooled);
        options.onProblem(
          `${this.name}: gave up on ${count} span(s) after ${attempt} attempt(s) over ${Date.now() - firstAttemptMs} ms to ${options.url}: ${problem}; dropped`,
        );
        this.backoffUntilMs = 0;
        return true;
      }
      options.onRetry();
      if (!this.failing)
        options.onProblem(`${this.name}: could not send ${count} span(s) to ${options.url}: ${problem}; retrying with backoff (spans stay queued)`);
      this.failing = true;
      this.backoffUntilMs = Math.max(this.backoffUntilMs, Date.now() + delayMs);
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

/** The start of an error answer's body, printable, for the log. */
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
  const { code } = error as NodeJS.ErrnoException;
  if (typeof code === 'string') return code;
  const cause = (error as Error & { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? error.message;
}
