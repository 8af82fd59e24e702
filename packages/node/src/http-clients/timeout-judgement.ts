/**
 * The rule every HTTP client hook applies: an outgoing call is timed when something will abort
 * it in time — an abort signal, or a timer the client (or the caller) acts on — and "in time"
 * means no later than the ceiling (`maxClientTimeoutMs`): a 5-minute timeout protects nobody.
 */
import type { Attributes, Span } from '@opentelemetry/api';
import { HTTP_CLIENT_TIMED, HTTP_CLIENT_TIMEOUT_MS } from '@request-budget/core';

/**
 * One thing that will abort a call. `ms` is its delay, or undefined when it cannot be read
 * (a plain AbortController's signal, follow-redirects' own timer): such a protection counts as
 * timed, since the caller evidently meant to bound the call.
 */
export interface Protection {
  /** What it is, for debugging: `signal`, `socket timeout`, `undici timeouts`, `got timeout.request`… */
  readonly source: string;
  readonly ms: number | undefined;
}

export interface Judgement {
  readonly timed: boolean;
  /** The shortest known delay among the protections, if any is known. */
  readonly timeoutMs: number | undefined;
}

/** A timer protection, or undefined when `ms` sets no timer (0, negative, not a finite number). */
export function timerProtection(source: string, ms: unknown): Protection | undefined {
  const value = typeof ms === 'string' ? Number.parseInt(ms, 10) : ms;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) return undefined;
  return { source, ms: value };
}

/** Timed when a protection's delay is unknown, or the shortest known one is within the ceiling. */
export function judge(protections: readonly Protection[], ceilingMs: number): Judgement {
  let shortest: number | undefined;
  let unknownDelay = false;
  for (const protection of protections) {
    if (protection.ms === undefined) unknownDelay = true;
    else if (shortest === undefined || protection.ms < shortest) shortest = protection.ms;
  }
  return { timed: unknownDelay || (shortest !== undefined && shortest <= ceilingMs), timeoutMs: shortest };
}

/** The judgement as client span attributes. */
export function judgementAttributes(judgement: Judgement): Attributes {
  return judgement.timeoutMs === undefined
    ? { [HTTP_CLIENT_TIMED]: judgement.timed }
    : { [HTTP_CLIENT_TIMED]: judgement.timed, [HTTP_CLIENT_TIMEOUT_MS]: Math.round(judgement.timeoutMs) };
}

/** Writes (or rewrites) the judgement on a span that is still open. */
export function recordJudgement(span: Span, judgement: Judgement): void {
  span.setAttribute(HTTP_CLIENT_TIMED, judgement.timed);
  if (judgement.timeoutMs !== undefined) span.setAttribute(HTTP_CLIENT_TIMEOUT_MS, Math.round(judgement.timeoutMs));
}
