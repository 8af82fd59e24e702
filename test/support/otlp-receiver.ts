/**
 * An in-process OTLP/HTTP trace receiver for tests: POST /v1/traces in protobuf or
 * JSON (optionally gzipped), decoded with the official schema into ReceivedSpans.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { BadPayloadError, decodeJsonRequest, decodeProtobufRequest, type OtlpEncoding } from './otlp-decode';
import { encodeEmptyResponse } from './otlp-schema';
import { describeSpans, OtlpSpanKind, type ReceivedSpan } from './received-span';

export { OtlpSpanKind, describeSpans } from './received-span';
export type { AttributeType, AttributeValue, ReceivedEvent, ReceivedSpan } from './received-span';

/** Request counters: accepted per encoding, how many of those were gzipped, and refusals. */
export interface RequestCounts {
  json: number;
  protobuf: number;
  gzip: number;
  rejected: number;
}

/** A request the receiver refused, kept so a failing test can say why. */
export interface Rejection {
  status: number;
  message: string;
}

/** Options for {@link OtlpReceiver.waitFor}. */
export interface WaitForOptions {
  /** Give up after this long (default 5000 ms). */
  timeoutMs?: number;
}

/** A running receiver; see {@link startOtlpReceiver}. */
export interface OtlpReceiver {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  readonly url: string;
  /** `url + '/v1/traces'`, ready for an exporter's `url` option. */
  readonly tracesUrl: string;
  /** Every accepted span, in arrival order. */
  readonly spans: readonly ReceivedSpan[];
  /** Request counters (live object). */
  readonly requests: Readonly<RequestCounts>;
  /** Every refused request, in order. */
  readonly rejections: readonly Rejection[];
  /** Accepted spans of kind SERVER. */
  serverSpans(): ReceivedSpan[];
  /**
   * Resolve with a snapshot of all spans once `predicate(spans)` returns true (checked
   * now and after every accepted request). A predicate that throws counts as "not yet",
   * so `expect(...)` can be used inside it. Rejects on timeout with what was received.
   */
  waitFor(predicate: (spans: readonly ReceivedSpan[]) => boolean, options?: WaitForOptions): Promise<ReceivedSpan[]>;
  /** Forget received spans, counters and rejections (the server keeps running). */
  clear(): void;
  /** Stop listening and drop open connections; pending waitFor calls reject. */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 32 * 1024 * 1024;

/** A request that cannot be accepted, with the status to answer. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function encodingOf(contentType: string | undefined): OtlpEncoding {
  const mime = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (mime === 'application/json') return 'json';
  if (mime === 'application/x-protobuf') return 'protobuf';
  throw new HttpError(415, `unsupported Content-Type "${contentType ?? ''}"; use application/json or application/x-protobuf`);
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Keep draining so the response can still be written, but stop buffering.
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () =>
      size > MAX_BODY_BYTES
        ? reject(new HttpError(413, `body larger than ${MAX_BODY_BYTES} bytes`))
        : resolve(Buffer.concat(chunks)),
    );
    req.on('error', reject);
  });
}

const isGzip = (contentEncoding: string | undefined) => contentEncoding?.trim().toLowerCase() === 'gzip';

function decompress(body: Buffer, contentEncoding: string | undefined): Buffer {
  const coding = (contentEncoding ?? 'identity').trim().toLowerCase();
  if (coding === 'identity' || coding === '') return body;
  if (coding !== 'gzip') throw new HttpError(415, `unsupported Content-Encoding "${contentEncoding}"`);
  try {
    return zlib.gunzipSync(body, { maxOutputLength: MAX_BODY_BYTES });
  } catch (err) {
    throw new HttpError(400, `gzip body did not inflate: ${(err as Error).message}`);
  }
}

/** Start a receiver on 127.0.0.1 with an OS-assigned port. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: RequestCounts = { json: 0, protobuf: 0, gzip: 0, rejected: 0 };
  const rejections: Rejection[] = [];
  const waiters = new Set<{ check: () => void; fail: (err: Error) => void }>();

  async function accept(req: http.IncomingMessage): Promise<{ encoding: OtlpEncoding }> {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/v1/traces') throw new HttpError(404, `no such endpoint ${req.method} ${req.url}; traces go to POST /v1/traces`);
    if (req.method !== 'POST') throw new HttpError(405, `${req.method} not allowed; use POST`);
    const encoding = encodingOf(req.headers['content-type']);
    const body = decompress(await readBody(req), req.headers['content-encoding']);
    try {
      const batch = encoding === 'json' ? decodeJsonRequest(body.toString('utf8')) : decodeProtobufRequest(body);
      spans.push(...batch);
    } catch (err) {
      if (err instanceof BadPayloadError) throw new HttpError(400, err.message);
      throw err;
    }
    requests[encoding] += 1;
    if (isGzip(req.headers['content-encoding'])) requests.gzip += 1;
    return { encoding };
  }

  const server = http.createServer((req, res) => {
    accept(req).then(
      ({ encoding }) => {
        if (encoding === 'json') {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        } else {
          res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(encodeEmptyResponse());
        }
        for (const waiter of [...waiters]) waiter.check();
      },
      (err: unknown) => {
        const status = err instanceof HttpError ? err.status : 500;
        const message = err instanceof Error ? err.message : String(err);
        requests.rejected += 1;
        rejections.push({ status, message });
        // Drain whatever the client still sends so the connection stays usable.
        req.resume();
        res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(message);
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  function summary(): string {
    const last = rejections.length ? `\nlast rejection: ${rejections.at(-1)!.status} ${rejections.at(-1)!.message}` : '';
    return (
      `received ${spans.length} span(s) from ${requests.json} JSON + ${requests.protobuf} protobuf request(s), ` +
      `${requests.rejected} rejected:\n${describeSpans(spans)}${last}`
    );
  }

  return {
    url,
    tracesUrl: `${url}/v1/traces`,
    spans,
    requests,
    rejections,
    serverSpans: () => spans.filter((s) => s.kind === OtlpSpanKind.SERVER),
    waitFor(predicate, { timeoutMs = 5000 } = {}) {
      return new Promise<ReceivedSpan[]>((resolve, reject) => {
        let lastError: unknown;
        const waiter = {
          check() {
            try {
              if (!predicate(spans)) return;
            } catch (err) {
              lastError = err;
              return;
            }
            finish();
            resolve([...spans]);
          },
          fail(err: Error) {
            finish();
            reject(err);
          },
        };
        const timer = setTimeout(() => {
          const why = lastError instanceof Error ? `\nlast predicate error: ${lastError.message}` : '';
          waiter.fail(new Error(`waitFor timed out after ${timeoutMs} ms; ${summary()}${why}`));
        }, timeoutMs);
        function finish() {
          clearTimeout(timer);
          waiters.delete(waiter);
        }
        waiters.add(waiter);
        waiter.check();
      });
    },
    clear() {
      spans.length = 0;
      rejections.length = 0;
      Object.assign(requests, { json: 0, protobuf: 0, gzip: 0, rejected: 0 });
    },
    async close() {
      for (const waiter of [...waiters]) waiter.fail(new Error(`receiver closed while waiting; ${summary()}`));
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Exporters keep connections alive; without this close() waits for them to idle out.
        server.closeAllConnections();
      });
    },
  };
}
