/**
 * The memory limit at the door: while the spans held (in traces and downstream queues) and the
 * requests in flight (in-flight-bytes.ts) are estimated at the soft limit or more, an export
 * request is answered 503 with Retry-After before its body is read, as otelcol's memory_limiter
 * refuses data above its soft limit. A request already admitted is refused while it arrives only
 * when its bytes would pass the limit itself: the margin above the soft limit is for them. 503
 * rather than 429: the collector is short of room for everyone, not asking this sender to slow
 * down; the OTLP/HTTP specification has senders retry both, after Retry-After.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CONTENT_TYPES, encodeStatus } from '../exporter/otlp-encode';

/** The soft limit, as a share of the limit: what is left absorbs the requests already under way. */
export const SOFT_LIMIT_RATIO = 0.8;
export const softLimitOf = (limitBytes: number): number => Math.floor(limitBytes * SOFT_LIMIT_RATIO);

/** What the memory limit is checked against. */
export interface MemoryFigures {
  /** --memory-limit; requests are refused from its soft limit on. */
  readonly limitBytes: number;
  /** Estimated bytes of the spans held now. */
  heldBytes(): number;
  /** Bytes of the requests in flight now (in-flight-bytes.ts). */
  inFlightBytes(): number;
}

export interface MemoryGateOptions extends MemoryFigures {
  retryAfterSeconds(): number;
  /** Bytes of body read and thrown away after the answer, beyond which the connection is cut. */
  readonly discardLimitBytes: number;
  onRefused(encoding: 'protobuf' | 'json'): void;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Why an export request is refused now (spans held and requests in flight at the soft limit or more), or undefined when it may come in. */
export function memoryRefusal(figures: MemoryFigures): string | undefined {
  const softLimitBytes = softLimitOf(figures.limitBytes);
  const held = figures.heldBytes();
  const inFlight = figures.inFlightBytes();
  if (held + inFlight < softLimitBytes) return undefined;
  const inFlightText = inFlight === 0 ? '' : ` and requests in flight at ${inFlight}`;
  return `memory limit: spans held are estimated at ${held} bytes${inFlightText}, past the soft limit of ${softLimitBytes} (${SOFT_LIMIT_RATIO * 100} % of --memory-limit ${figures.limitBytes}); retry later`;
}

/**
 * Why `moreBytes` more of a request in flight cannot be held (held and in flight would pass the
 * limit itself), or undefined when they can.
 */
export function memoryOverrun(figures: MemoryFigures, moreBytes: number): string | undefined {
  const held = figures.heldBytes();
  const inFlight = figures.inFlightBytes();
  if (held + inFlight + moreBytes <= figures.limitBytes) return undefined;
  return `memory limit: spans held (estimated at ${held} bytes) and requests in flight (${inFlight} bytes, ${moreBytes} more for this one) would pass --memory-limit ${figures.limitBytes}; retry later`;
}

export function withMemoryGate(handler: Handler, options: MemoryGateOptions): Handler {
  return (req, res) => {
    if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/v1/traces') return handler(req, res);
    const message = memoryRefusal(options);
    if (message === undefined) return handler(req, res);
    const encoding = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase() === 'application/json' ? 'json' : 'protobuf';
    options.onRefused(encoding);
    res
      .writeHead(503, { 'content-type': CONTENT_TYPES[encoding], 'retry-after': String(options.retryAfterSeconds()) })
      .end(encodeStatus(encoding, 503, message));
    // Read (and drop) the body, so the sender sees the answer rather than a reset connection.
    let read = 0;
    req.on('data', (chunk: Buffer) => {
      read += chunk.length;
      if (read > options.discardLimitBytes) req.destroy();
    });
    req.on('error', () => undefined);
  };
}
