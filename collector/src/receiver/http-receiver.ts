/**
 * The collector's HTTP side: OTLP/HTTP traces in (POST /v1/traces), Prometheus metrics, health and
 * readiness. Answers follow the OTLP/HTTP specification: 200 with an ExportTraceServiceResponse
 * (with partial_success when some spans were refused) in the encoding of the request; errors with
 * a google.rpc.Status body in that encoding; 503 or 429 with Retry-After when the collector cannot
 * take more. No request can take the service down: every failure is answered, counted and, when
 * unexpected, logged.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import zlib from 'node:zlib';
import type { CollectorMetrics } from '../metrics';
import { decodeTraceRequest, OtlpDecodeError, type OtlpEncoding } from './otlp-decode';
import { CONTENT_TYPES, encodeExportResponse, encodeStatus } from '../exporter/otlp-encode';
import { acceptDecoded, bearerCheck, SHUTTING_DOWN_MESSAGE, SHUTTING_DOWN_RETRY_AFTER_SECONDS, type IntakeOptions } from './accept-decoded';
import type { InFlightBytes } from './in-flight-bytes';

export interface ReceiverOptions extends Omit<IntakeOptions, 'onAcceptedSpans'> {
  readonly maxBodyBytes: number;
  /** Request bodies received and decoded at once; a request beyond it is refused before its body is read. */
  readonly maxConcurrentRequests: number;
  /**
   * A body with no new byte for this long has stalled: when every slot is taken, the longest
   * stalled one is cut off (its connection destroyed) and its slot given to the new request.
   */
  readonly stalledAfterMs: number;
  readonly authToken: string | undefined;
  readonly metrics: CollectorMetrics;
  /** The bytes of the requests in flight: a body counts in them as it arrives and is inflated, until its spans are taken in. */
  readonly inFlight: InFlightBytes;
  /** Why `moreBytes` more of a body cannot be held (memory-gate.ts), or undefined when they can. */
  memoryOverrun(moreBytes: number): string | undefined;
  /** Reports a request refused while its body arrived or was inflated, because the memory limit would be passed. */
  onMemoryOverrun(): void;
  /** Why the collector is not ready ([] when it is). */
  notReadyReasons(): string[];
  reportProblem(message: string): void;
  /** Reports a request refused because maxConcurrentRequests bodies were being received. */
  onTooManyRequests(): void;
  /** Reports a stalled body cut off to free its slot for a new request. */
  onStalledBodyCut(): void;
}

/** A receive slot, held from the first byte of a body until it is decoded. */
interface ReceiveSlot {
  /** When the body last made progress (performance.now()). */
  lastByteAt: number;
  /** The body is whole (being decoded): no longer at the sender's pace, never cut off. */
  bodyDone: boolean;
  /** Cut off to give its slot to another request. */
  cut: boolean;
  readonly req: IncomingMessage;
}

/** An answer other than success. */
class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    /** Answered before the rest of the body is read (and thrown away). */
    readonly answerFirst = false,
  ) {
    super(message);
  }
}

/** Request bodies are read past the limit (and thrown away) up to this multiple, then cut off. */
const DISCARD_FACTOR = 4;

export function createRequestHandler(options: ReceiverOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const authorized = bearerCheck(options.authToken);
  /** Requests whose bodies are being received or decoded now. */
  const receiving = new Set<ReceiveSlot>();

  /**
   * A slot for `req`, or undefined when all are held by bodies still arriving. Slots held by
   * stalled senders are taken back: a few connections that send a byte and stop cannot keep
   * every other sender out until a timeout.
   */
  function takeSlot(req: IncomingMessage): ReceiveSlot | undefined {
    if (receiving.size >= options.maxConcurrentRequests) {
      let stalled: ReceiveSlot | undefined;
      for (const slot of receiving) if (!slot.bodyDone && (stalled === undefined || slot.lastByteAt < stalled.lastByteAt)) stalled = slot;
      if (stalled === undefined || performance.now() - stalled.lastByteAt < options.stalledAfterMs) return undefined;
      stalled.cut = true;
      receiving.delete(stalled);
      // Destroyed, not answered: the sender stopped sending and may not be reading either.
      stalled.req.destroy();
      options.onStalledBodyCut();
    }
    const slot: ReceiveSlot = { lastByteAt: performance.now(), bodyDone: false, cut: false, req };
    receiving.add(slot);
    return slot;
  }

  async function receiveTraces(req: IncomingMessage): Promise<{ encoding: OtlpEncoding; body: Uint8Array; spans: number }> {
    // What the request says it is decides the encoding of the answer, failures included.
    const encoding = encodingOf(req.headers['content-type']);
    const failure = (status: number, message: string, headers?: Record<string, string>) => new HttpFailure(status, message, headers);
    const shuttingDown = () => failure(503, SHUTTING_DOWN_MESSAGE, { 'retry-after': String(SHUTTING_DOWN_RETRY_AFTER_SECONDS), connection: 'close' });
    if (options.isShuttingDown()) throw shuttingDown();
    if (!authorized(req.headers.authorization ?? '')) {
      throw failure(401, 'missing or wrong bearer token (Authorization: Bearer …)', { 'www-authenticate': 'Bearer' });
    }
    if (encoding === undefined) {
      throw failure(415, `unsupported Content-Type "${req.headers['content-type'] ?? ''}"; use application/x-protobuf or application/json`);
    }
    const coding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (coding !== 'gzip' && coding !== 'identity' && coding !== '')
      throw failure(415, `unsupported Content-Encoding "${req.headers['content-encoding']}"; use gzip or none`);
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > options.maxBodyBytes) throw failure(413, `body of ${declared} bytes is larger than the limit of ${options.maxBodyBytes} bytes`);

    // Bodies are held whole while read and decoded: at most maxConcurrentRequests at once bounds
    // their memory. One more is answered at once, before its body is read; the sender retries.
    const slot = takeSlot(req);
    if (slot === undefined) {
      options.onTooManyRequests();
      throw new HttpFailure(
        503,
        `too many requests at once (${receiving.size} already being received, the limit of --max-concurrent-requests); retry later`,
        { 'retry-after': '1' },
        true,
      );
    }
    // What the request holds (raw body, then also the inflated one) counts in flight until its
    // spans are taken in; bytes that would pass the memory limit refuse it on the spot.
    const share = options.inFlight.open();
    const hold = (bytes: number) => {
      const overrun = bytes > share.bytes ? options.memoryOverrun(bytes - share.bytes) : undefined;
      if (overrun !== undefined) {
        options.onMemoryOverrun();
        throw new HttpFailure(503, overrun, { 'retry-after': String(options.capacity().retryAfterSeconds) }, true);
      }
      share.set(bytes);
    };
    let decoded;
    try {
      let raw: Uint8Array | undefined;
      try {
        raw = await readBody(req, options.maxBodyBytes, (kept) => {
          slot.lastByteAt = performance.now();
          hold(kept);
        });
      } catch (error) {
        if (error instanceof HttpFailure) throw error;
        if (slot.cut) throw failure(408, 'request body stalled; its connection was closed to free its slot for another request');
        throw failure(400, `request body incomplete: ${(error as Error).message}`);
      }
      slot.bodyDone = true;
      if (raw === undefined) throw failure(413, `body larger than the limit of ${options.maxBodyBytes} bytes`);
      let body: Uint8Array = raw;
      if (coding === 'gzip') {
        const rawBytes = raw.length;
        try {
          body = await inflate(raw, options.maxBodyBytes, (inflated) => hold(rawBytes + inflated));
        } catch (error) {
          if (error instanceof HttpFailure) throw error;
          if (error instanceof RangeError) throw failure(413, `inflated body larger than the limit of ${options.maxBodyBytes} bytes`);
          throw failure(400, `gzip body did not inflate: ${(error as Error).message}`);
        }
      }
      try {
        decoded = decodeTraceRequest(body, encoding);
      } catch (error) {
        if (error instanceof OtlpDecodeError) throw failure(400, error.message);
        // A decoder bug or a pathological payload (too deep): still the payload's fault.
        throw failure(400, `payload could not be decoded: ${(error as Error).message}`);
      }
    } finally {
      receiving.delete(slot);
      // Ended however it ended; a decoded request is taken in just below, with no await between.
      share.release();
    }
    const intake = acceptDecoded({ ...options, onAcceptedSpans: (count) => options.metrics.receivedSpans.inc({ encoding }, count) }, decoded);
    if (intake.outcome !== 'accepted')
      throw intake.outcome === 'shutting_down' ? shuttingDown() : failure(503, intake.message, { 'retry-after': String(intake.retryAfterSeconds) });
    return { encoding, body: encodeExportResponse(encoding, intake.partial), spans: intake.spans };
  }

  async function handleTraces(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const encoding = encodingOf(req.headers['content-type']);
    try {
      const result = await receiveTraces(req);
      options.metrics.receivedRequests.inc({ encoding: result.encoding, code: '200' });
      res.writeHead(200, { 'content-type': CONTENT_TYPES[result.encoding] }).end(result.body);
    } catch (error) {
      const failure = error instanceof HttpFailure ? error : new HttpFailure(500, 'internal error');
      if (!(error instanceof HttpFailure)) {
        options.metrics.internalErrors.inc();
        options.reportProblem(`unexpected error while receiving traces: ${(error as Error)?.stack ?? String(error)}`);
      }
      options.metrics.receivedRequests.inc({ encoding: encoding ?? 'unknown', code: String(failure.status) });
      const answerEncoding = encoding ?? 'json';
      const answer = () => {
        if (res.headersSent || res.destroyed) return;
        res
          .writeHead(failure.status, { 'content-type': CONTENT_TYPES[answerEncoding], ...failure.headers })
          .end(encodeStatus(answerEncoding, failure.status, failure.message));
      };
      if (failure.answerFirst) answer();
      // The rest of the body is read and thrown away (within a bound), so the sender sees the
      // answer instead of a reset connection.
      await discardBody(req, options.maxBodyBytes * DISCARD_FACTOR);
      answer();
    }
  }

  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    let handled: Promise<void>;
    try {
      if (path === '/v1/traces') {
        if (req.method !== 'POST') handled = plain(req, res, 405, `${req.method} not allowed on /v1/traces; use POST\n`, { allow: 'POST' });
        else handled = handleTraces(req, res);
      } else if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
        handled = options.metrics.registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': options.metrics.registry.contentType }).end(text);
        });
      } else if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
        handled = plain(req, res, 200, 'ok\n');
      } else if (path === '/readyz' && (req.method === 'GET' || req.method === 'HEAD')) {
        const reasons = options.notReadyReasons();
        handled = reasons.length === 0 ? plain(req, res, 200, 'ready\n') : plain(req, res, 503, `not ready: ${reasons.join('; ')}\n`);
      } else {
        handled = plain(req, res, 404, `no such endpoint: ${req.method} ${path}; traces go to POST /v1/traces\n`);
      }
    } catch (error) {
      handled = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    handled.catch((error: unknown) => {
      options.metrics.internalErrors.inc();
      options.reportProblem(`unexpected error answering ${req.method} ${path}: ${(error as Error)?.stack ?? String(error)}`);
      if (!res.headersSent && !res.destroyed) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('internal error\n');
      else res.destroy();
    });
  };
}

function encodingOf(contentType: string | undefined): OtlpEncoding | undefined {
  const mime = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (mime === 'application/x-protobuf') return 'protobuf';
  if (mime === 'application/json') return 'json';
  return undefined;
}

async function plain(req: IncomingMessage, res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): Promise<void> {
  await discardBody(req, 1024 * 1024);
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers }).end(req.method === 'HEAD' ? undefined : text);
}

/**
 * The whole body, or undefined when it is larger than `limit` (then read to its end and dropped).
 * `onProgress` hears every chunk, with the bytes kept so far (0 once too large); what it throws
 * ends the read.
 */
function readBody(req: IncomingMessage, limit: number, onProgress: (keptBytes: number) => void): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        tooLarge = true;
        chunks.length = 0;
      } else chunks.push(chunk);
      try {
        onProgress(tooLarge ? 0 : size);
      } catch (error) {
        cleanup();
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      if (size > limit * DISCARD_FACTOR) {
        cleanup();
        req.destroy();
        resolve(undefined);
      }
    };
    const onEnd = () => {
      cleanup();
      resolve(tooLarge ? undefined : Buffer.concat(chunks, size));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onClose = () => onError(new Error('connection closed before the body ended'));
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * Inflates a gzip body (concatenated members as one). `onProgress` hears the bytes inflated so far
 * and may throw to stop; past `limit` bytes it stops with a RangeError.
 */
function inflate(raw: Uint8Array, limit: number, onProgress: (inflatedBytes: number) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const gunzip = zlib.createGunzip({ chunkSize: 64 * 1024 });
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (error: Error) => {
      gunzip.destroy();
      reject(error);
    };
    gunzip.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return stop(new RangeError(`inflated body larger than ${limit} bytes`));
      try {
        onProgress(size);
      } catch (error) {
        return stop(error instanceof Error ? error : new Error(String(error)));
      }
      chunks.push(chunk);
    });
    gunzip.on('end', () => resolve(Buffer.concat(chunks, size)));
    gunzip.on('error', reject);
    gunzip.end(raw);
  });
}

/** Reads what is left of the body and drops it; past `limit` bytes the connection is cut. */
function discardBody(req: IncomingMessage, limit: number): Promise<void> {
  if (req.readableEnded || req.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let size = 0;
    const done = () => {
      req.off('data', onData);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.destroy();
        done();
      }
    };
    req.on('data', onData);
    req.once('end', done);
    req.once('error', done);
    req.once('close', done);
    req.resume();
  });
}
