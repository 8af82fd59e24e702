/**
 * What every receiver does with a decoded ExportTraceServiceRequest, whatever carried it (OTLP/HTTP
 * or OTLP/gRPC): refuse it while shutting down or when the spans would not fit, else take the spans
 * in, count them, and say which were refused one by one (the partial success of the answer).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { DecodedRequest } from './otlp-decode';
import type { CollectedSpan } from '../otlp/otlp-model';

export interface IntakeOptions {
  /** Spans held now, the most that may be held, and when to come back (s) when full. */
  capacity(): { held: number; max: number; retryAfterSeconds: number };
  /** Takes decoded spans in (must not throw). */
  accept(spans: CollectedSpan[]): void;
  isShuttingDown(): boolean;
  /** Counts a refused-or-invalid span drop (reason label). */
  onRefusedSpans(count: number, reason: 'queue_full' | 'invalid'): void;
  /** Counts accepted spans (received_spans_total). */
  onAcceptedSpans(count: number): void;
}

export type Intake =
  | { readonly outcome: 'accepted'; readonly spans: number; readonly partial: { rejectedSpans: number; errorMessage: string } | undefined }
  | { readonly outcome: 'shutting_down' | 'queue_full'; readonly message: string; readonly retryAfterSeconds: number };

export const SHUTTING_DOWN_MESSAGE = 'shutting down; send to another instance';
/** When a sender refused at shutdown should come back (Retry-After; gRPC RetryInfo). */
export const SHUTTING_DOWN_RETRY_AFTER_SECONDS = 5;

export function acceptDecoded(options: IntakeOptions, decoded: DecodedRequest): Intake {
  const { spans, rejected } = decoded;
  // Shutdown may have begun while the body was read: the traces held were flushed then, and
  // spans taken in now would be answered as accepted and never processed.
  if (options.isShuttingDown()) return { outcome: 'shutting_down', message: SHUTTING_DOWN_MESSAGE, retryAfterSeconds: SHUTTING_DOWN_RETRY_AFTER_SECONDS };
  // Decoded even when full, so that what is refused is counted span by span.
  const now = options.capacity();
  if (now.held > 0 && now.held + spans.length > now.max) {
    options.onRefusedSpans(spans.length + rejected, 'queue_full');
    return {
      outcome: 'queue_full',
      message: `queue full (${now.held} spans held, ${spans.length} more would pass the limit of ${now.max}); retry later`,
      retryAfterSeconds: now.retryAfterSeconds,
    };
  }
  if (spans.length > 0) options.accept(spans);
  options.onAcceptedSpans(spans.length);
  if (rejected > 0) options.onRefusedSpans(rejected, 'invalid');
  const partial = rejected > 0 ? { rejectedSpans: rejected, errorMessage: `${rejected} span(s) refused: ${decoded.rejectionReason}` } : undefined;
  return { outcome: 'accepted', spans: spans.length, partial };
}

/** Whether an Authorization value carries `token` (constant time); always true without a token. */
export function bearerCheck(token: string | undefined): (authorization: string) => boolean {
  if (token === undefined) return () => true;
  const expected = digest(`Bearer ${token}`);
  return (authorization) => timingSafeEqual(digest(authorization), expected);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
