/**
 * What went wrong, for a one-line report: the message, and the cause underneath it where there
 * is one (`fetch failed` alone says nothing; its cause says `connect ECONNREFUSED 127.0.0.1:9093`).
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as Error & { cause?: unknown }).cause;
  if (cause === undefined || cause === null) return error.message;
  const causeText = cause instanceof Error ? ((cause as Error & { code?: string }).code ?? cause.message) : String(cause);
  return causeText !== '' && !error.message.includes(causeText) ? `${error.message} (${causeText})` : error.message;
}
