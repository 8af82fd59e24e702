/**
 * What went wrong, for a one-line report: the message, and the cause underneath it where there
 * is one (`fetch failed` alone says nothing; its cause says `connect ECONNREFUSED 127.0.0.1:9093`).
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return describeValue(error);
  const cause = (error as Error & { cause?: unknown }).cause;
  if (cause === undefined || cause === null) return error.message;
  const causeText = cause instanceof Error ? ((cause as Error & { code?: string }).code ?? cause.message) : describeValue(cause);
  return causeText !== '' && !error.message.includes(causeText) ? `${error.message} (${causeText})` : error.message;
}

/** Text for a thrown value that is not an Error (a string, a number, an object…). */
function describeValue(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return value.toString();
  try {
    return JSON.stringify(value) ?? typeof value;
  } catch {
    return typeof value;
  }
}
