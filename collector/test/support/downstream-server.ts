/**
 * A downstream for delivery tests: an OTLP/HTTP receiver on a chosen (or free) loopback port that
 * can fail or stall on demand, records when each attempt came, and decodes what it accepts with
 * the official schema.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeProtobufRequest } from '../../../test/support/otlp-decode';
import { encodeEmptyResponse } from '../../../test/support/otlp-schema';
import type { ReceivedSpan } from '../../../test/support/received-span';
import type { DownstreamOptions } from '../../src/exporter/downstream';
import { encodeTraceRequest } from '../../src/exporter/otlp-encode';

export interface Answer {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly delayMs?: number;
}

export interface DownstreamServer {
  readonly url: string;
  readonly port: number;
  /** Spans of accepted requests. */
  readonly spans: ReceivedSpan[];
  /** Epoch ms of every request, accepted or not. */
  readonly attempts: number[];
  /** Most requests it was answering at once (from the end of a request's body to its answer). */
  readonly maxInFlight: number;
  close(): Promise<void>;
}

/** `answer(n)` decides the n-th request's fate (n from 0); 200 accepts and decodes it. */
export async function startDownstream(port = 0, answer: (attempt: number) => Answer = () => ({ status: 200 })): Promise<DownstreamServer> {
  const spans: ReceivedSpan[] = [];
  const attempts: number[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const { status, headers = {}, delayMs = 0 } = answer(attempts.length);
      attempts.push(Date.now());
      maxInFlight = Math.max(maxInFlight, (inFlight += 1));
      setTimeout(() => {
        inFlight -= 1;
        if (status === 200) {
          spans.push(...decodeProtobufRequest(Buffer.concat(chunks)));
          res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(encodeEmptyResponse());
        } else {
          res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(`status ${status}`);
        }
      }, delayMs);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    spans,
    attempts,
    get maxInFlight() {
      return maxInFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Options for a Downstream that sends OTLP/protobuf to `server`: short backoffs and a few seconds
 * of retrying, every callback a no-op unless `overrides` gives one.
 */
export function downstreamOptionsFor(server: DownstreamServer, overrides: Partial<DownstreamOptions> = {}): DownstreamOptions {
  return {
    name: 'otlp',
    url: `${server.url}/v1/traces`,
    encode: (batch) => ({ body: encodeTraceRequest(batch), contentType: 'application/x-protobuf' }),
    maxBatchSpans: 512,
    concurrency: 2,
    requestTimeoutMs: 2000,
    initialBackoffMs: 10,
    maxBackoffMs: 20,
    maxElapsedMs: 10_000,
    onForwarded: () => {},
    onRetry: () => {},
    onDropped: () => {},
    onProblem: () => {},
    ...overrides,
  };
}
