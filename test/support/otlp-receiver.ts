/**
 * An in-process OTLP/HTTP trace receiver for tests: POST /v1/traces in protobuf or
 * JSON (optionally gzipped), decoded with the official schema into ReceivedSpans.
 */
import type http from 'node:http';
import { HttpError } from './http-error';
import { BadPayloadError, decodeJsonRequest, decodeProtobufRequest, type OtlpEncoding } from './otlp-decode';
import { encodeEmptyResponse } from './otlp-schema';
import { describeSpans, OtlpSpanKind, type ReceivedSpan } from './received-span';
import { startReceiverServer } from './receiver-server';
import { inflateBody, isGzip, readBody } from './request-body';
import { waitersFor, type WaitForOptions } from './wait-for';

export { OtlpSpanKind, describeSpans } from './received-span';
export type { AttributeType, AttributeValue, ReceivedEvent, ReceivedSpan } from './received-span';
export type { WaitForOptions } from './wait-for';

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

function encodingOf(contentType: string | undefined): OtlpEncoding {
  const mime = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (mime === 'application/json') return 'json';
  if (mime === 'application/x-protobuf') return 'protobuf';
  throw new HttpError(415, `unsupported Content-Type "${contentType ?? ''}"; use application/json or application/x-protobuf`);
}

/** Start a receiver on 127.0.0.1 with an OS-assigned port. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: RequestCounts = { json: 0, protobuf: 0, gzip: 0, rejected: 0 };
  const rejections: Rejection[] = [];
  const waiters = waitersFor(spans, summary);

  async function accept(req: http.IncomingMessage): Promise<{ encoding: OtlpEncoding }> {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/v1/traces') throw new HttpError(404, `no such endpoint ${req.method} ${req.url}; traces go to POST /v1/traces`);
    if (req.method !== 'POST') throw new HttpError(405, `${req.method} not allowed; use POST`);
    const encoding = encodingOf(req.headers['content-type']);
    const body = inflateBody(await readBody(req), req.headers['content-encoding']);
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

  const server = await startReceiverServer({
    accept,
    onAccepted(res, { encoding }) {
      if (encoding === 'json') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } else {
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(encodeEmptyResponse());
      }
      waiters.recheck();
    },
    onRefused({ status, message }) {
      requests.rejected += 1;
      rejections.push({ status, message });
    },
  });
  const { url } = server;

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
    waitFor: waiters.waitFor,
    clear() {
      spans.length = 0;
      rejections.length = 0;
      Object.assign(requests, { json: 0, protobuf: 0, gzip: 0, rejected: 0 });
    },
    async close() {
      waiters.rejectAll(`receiver closed while waiting; ${summary()}`);
      await server.close();
    },
  };
}
