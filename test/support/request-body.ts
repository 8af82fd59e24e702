/**
 * Reading a request body on a test server: whole, up to a size limit, and inflated when it is
 * gzipped. Failures are {@link HttpError}s with the status to answer.
 */
import type http from 'node:http';
import zlib from 'node:zlib';
import { HttpError } from './http-error';

/** The largest body accepted, as sent and once inflated (32 MiB). */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;

/** The body as sent; rejects with 413 when it is larger than `maxBytes`. */
export function readBody(req: http.IncomingMessage, maxBytes = MAX_BODY_BYTES): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Keep draining so the response can still be written, but stop buffering.
      if (size <= maxBytes) chunks.push(chunk);
    });
    req.on('end', () => (size > maxBytes ? reject(new HttpError(413, `body larger than ${maxBytes} bytes`)) : resolve(Buffer.concat(chunks))));
    req.on('error', reject);
  });
}

/** True when the Content-Encoding header says gzip. */
export const isGzip = (contentEncoding: string | undefined): boolean => contentEncoding?.trim().toLowerCase() === 'gzip';

/**
 * `body` decoded per its Content-Encoding header: as is when none (or identity), gunzipped (to at
 * most `maxBytes`) when gzip; 415 for any other coding, 400 when the gzip data is broken.
 */
export function inflateBody(body: Buffer, contentEncoding: string | undefined, maxBytes = MAX_BODY_BYTES): Buffer {
  const coding = (contentEncoding ?? '').trim().toLowerCase();
  if (coding === '' || coding === 'identity') return body;
  if (coding !== 'gzip') throw new HttpError(415, `unsupported Content-Encoding "${contentEncoding}"; use gzip or none`);
  try {
    return zlib.gunzipSync(body, { maxOutputLength: maxBytes });
  } catch (err) {
    throw new HttpError(400, `gzip body did not inflate: ${(err as Error).message}`);
  }
}
