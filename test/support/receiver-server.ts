/**
 * The HTTP side of an in-process receiver for tests: a server on 127.0.0.1 with an OS-assigned
 * port that hands each request to `accept`. When that resolves, `onAccepted` answers; when it
 * throws, the request is refused with the {@link HttpError}'s status (500 for any other error) and
 * its message as plain text, after `onRefused` has recorded it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpError } from './http-error';

/** A refused request: the status answered, why, and the body the HttpError carried ('' if none). */
export interface Refusal {
  status: number;
  message: string;
  body: string;
}

/** What a receiver does with requests; see {@link startReceiverServer}. */
export interface ReceiverHandlers<T> {
  /** Read, check and keep the request's payload; throw an HttpError to refuse it. */
  accept(req: http.IncomingMessage): Promise<T>;
  /** Answer an accepted request (and tell whoever waits for payloads). */
  onAccepted(res: http.ServerResponse, accepted: T): void;
  /** Record a refusal; called before the refusal is answered. */
  onRefused(refusal: Refusal): void;
}

/** A listening receiver server. */
export interface ReceiverServer {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  readonly url: string;
  /** Stop listening and drop open connections. */
  close(): Promise<void>;
}

/** Start listening; resolves once the port is bound. */
export async function startReceiverServer<T>(handlers: ReceiverHandlers<T>): Promise<ReceiverServer> {
  const server = http.createServer((req, res) => {
    handlers.accept(req).then(
      (accepted) => handlers.onAccepted(res, accepted),
      (err: unknown) => {
        const status = err instanceof HttpError ? err.status : 500;
        const message = err instanceof Error ? err.message : String(err);
        handlers.onRefused({ status, message, body: err instanceof HttpError ? err.body : '' });
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

  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Exporters keep connections alive; without this close() waits for them to idle out.
        server.closeAllConnections();
      });
    },
  };
}
