/**
 * One POST to a downstream over node:http(s) with a keep-alive agent: the body written as it is
 * (fetch copied each batch twice through web streams, a third of the cost of sending it), the
 * answer read up to a bound (a downstream answering gigabytes cannot fill the collector's memory),
 * ended by an abort signal (the collector stopping) or a timeout, whichever comes first.
 */
import http from 'node:http';
import https from 'node:https';

/** The answer: its status, a header, and its body (the first `MAX_ANSWER_BYTES`). */
export interface PostAnswer {
  readonly status: number;
  readonly ok: boolean;
  header(name: string): string | undefined;
  readonly body: Uint8Array;
}

/** Of an answer body, this much is read; the rest is discarded (only partial success and error text are read). */
const MAX_ANSWER_BYTES = 1024 * 1024;

/** The request took longer than its timeout. */
export class PostTimeoutError extends Error {
  override name = 'TimeoutError';
}

export class HttpPoster {
  private readonly url: URL;
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;

  /** `sockets`: connections kept to the downstream, one per request in flight. */
  constructor(url: string, sockets: number) {
    this.url = new URL(url);
    const secure = this.url.protocol === 'https:';
    this.agent = new (secure ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets });
    this.request = secure ? https.request : http.request;
  }

  post(headers: Readonly<Record<string, string>>, body: Uint8Array, signal: AbortSignal, timeoutMs: number): Promise<PostAnswer> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let req: http.ClientRequest | undefined;
      const finish = (error: Error | undefined, answer?: PostAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (error !== undefined) {
          req?.destroy();
          reject(error);
        } else resolve(answer!);
      };
      const onAbort = () => finish(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      const timer = setTimeout(() => finish(new PostTimeoutError(`no answer within ${timeoutMs} ms`)), timeoutMs);
      try {
        req = this.start(headers, body, finish);
      } catch (error) {
        // A header Node refuses (checked in the configuration, but not only from it): no request.
        finish(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      req.on('error', (error) => finish(error));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      req.end(body);
    });
  }

  private start(
    headers: Readonly<Record<string, string>>,
    body: Uint8Array,
    finish: (error: Error | undefined, answer?: PostAnswer) => void,
  ): http.ClientRequest {
    return this.request(this.url, { method: 'POST', agent: this.agent, headers: { ...headers, 'content-length': String(body.byteLength) } }, (res) => {
      const chunks: Buffer[] = [];
      let length = 0;
      res.on('data', (chunk: Buffer) => {
        if (length >= MAX_ANSWER_BYTES) return;
        chunks.push(chunk);
        length += chunk.length;
      });
      res.on('error', (error) => finish(error));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        finish(undefined, {
          status,
          ok: status >= 200 && status < 300,
          header: (name) => {
            const value = res.headers[name.toLowerCase()];
            return Array.isArray(value) ? value.join(', ') : value;
          },
          body: all.length > MAX_ANSWER_BYTES ? all.subarray(0, MAX_ANSWER_BYTES) : all,
        });
      });
    });
  }

  /** Closes the idle connections kept to the downstream. */
  close(): void {
    this.agent.destroy();
  }
}
