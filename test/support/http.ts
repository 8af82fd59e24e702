/** Small HTTP client helpers for end-to-end tests. */

/** What {@link get} returns: the status and the whole body as text. */
export interface HttpResult {
  status: number;
  body: string;
  headers: Headers;
}

/** Options for {@link get}. */
export interface GetOptions {
  /** Abort the request after this long (default 5000 ms). */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

/** GET `url` with a timeout; a non-2xx status is returned, not thrown. */
export async function get(url: string, { timeoutMs = 5000, headers }: GetOptions = {}): Promise<HttpResult> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers });
    return { status: res.status, body: await res.text(), headers: res.headers };
  } catch (err) {
    // The bare "TimeoutError"/"fetch failed" messages do not say which request.
    const reason = (err as Error).name === 'TimeoutError' ? `timed out after ${timeoutMs} ms` : describeCause(err);
    throw new Error(`GET ${url} failed: ${reason}`, { cause: err });
  }
}

function describeCause(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.cause?.message ?? e.message;
}

/**
 * Run `fn(0)`..`fn(n-1)` at the same time and return their results in index order.
 * Waits for every call to settle before throwing, so no request is still running
 * when the caller's test moves on; several failures throw an AggregateError.
 */
export async function concurrently<T>(n: number, fn: (index: number) => Promise<T>): Promise<T[]> {
  const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => fn(i)));
  const errors = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected').map((s) => s.reason);
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} of ${n} concurrent calls failed`);
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}
