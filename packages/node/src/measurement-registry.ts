/**
 * Lets code in the same process follow the roots that cost attribution opens and closes, without
 * a span processor of its own: measureCost follows the server roots of its own trace (the
 * requests it sent to this process's server), and the CI baseline recorder sees every root that
 * ends while a test suite runs. CostSpanProcessor calls in; while nobody listens, a call costs
 * one size check.
 *
 * Entries exist only while a measurement is open or a recorder is installed: nothing here grows
 * with traffic.
 */
import { SpanKind } from '@opentelemetry/api';
import type { ReadableSpan, Span } from '@opentelemetry/sdk-trace';
import { describeError, reportProblem } from './diagnostics';
import { KNOWN_LIBRARIES } from './known-libraries';

/** Receives the roots (and, for a trace watch, the children) of the spans it follows. */
export interface RootObserver {
  /** A root opened: a SERVER span, a job, or a measurement. */
  rootStarted?(root: Span): void;
  /** A root ended, its cost record written. */
  rootEnded?(root: ReadableSpan): void;
  /** Trace watches only: a span attributed to `root` ended (the root itself included). */
  spanEnded?(span: ReadableSpan, root: Span): void;
}

/** Most traces watched at once; a leak of measurements is reported rather than kept. */
export const MAX_WATCHED_TRACES = 10_000;

const byTrace = new Map<string, RootObserver>();
const everywhere = new Set<RootObserver>();

/** Follows the roots and spans of one trace until the returned function is called. */
export function watchTrace(traceId: string, observer: RootObserver): () => void {
  if (byTrace.size >= MAX_WATCHED_TRACES) throw new Error(`more than ${MAX_WATCHED_TRACES} measurements open at once: is measureCost awaited?`);
  byTrace.set(traceId, observer);
  return () => {
    if (byTrace.get(traceId) === observer) byTrace.delete(traceId);
  };
}

/** Follows every root of the process until the returned function is called. */
export function observeRoots(observer: RootObserver): () => void {
  everywhere.add(observer);
  return () => {
    everywhere.delete(observer);
  };
}

/** Called by cost attribution when it opens a root. Never throws into the caller's hook. */
export function notifyRootStarted(root: Span): void {
  if (byTrace.size === 0 && everywhere.size === 0) return;
  const watch = byTrace.get(root.spanContext().traceId);
  if (watch !== undefined && root.kind === SpanKind.SERVER) guarded(() => watch.rootStarted?.(root));
  for (const observer of everywhere) guarded(() => observer.rootStarted?.(root));
}

/** Called by cost attribution when a span it attributed to `root` ends (`span === root` for the root). */
export function notifySpanEnded(span: ReadableSpan, root: Span): void {
  if (byTrace.size === 0 && everywhere.size === 0) return;
  const watch = byTrace.get(span.spanContext().traceId);
  if (watch !== undefined) {
    guarded(() => watch.spanEnded?.(span, root));
    if ((span as unknown) === root && root.kind === SpanKind.SERVER) guarded(() => watch.rootEnded?.(span));
  }
  if ((span as unknown) === root) for (const observer of everywhere) guarded(() => observer.rootEnded?.(span));
}

let loadedAtStart: ReadonlySet<string> | undefined;

/**
 * Remembers which files were in the module cache when cost attribution started (the first
 * CostSpanProcessor): a driver among them was loaded before its instrumentation, and measureCost
 * refuses to report its 0 queries as a pass.
 */
export function noteModulesLoadedAtStart(): void {
  if (loadedAtStart !== undefined) return;
  try {
    // Only the known libraries' files: the set is kept for the life of the process.
    const files = typeof require === 'function' ? Object.keys(require.cache) : [];
    loadedAtStart = new Set(files.filter((file) => KNOWN_FILE.test(file)));
  } catch {
    loadedAtStart = new Set();
  }
}

const KNOWN_FILE = new RegExp(
  `[\\\\/]node_modules[\\\\/](${[...KNOWN_LIBRARIES.map((library) => library.name), 'pg-pool'].map((name) => name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|')})[\\\\/]`,
);

/** The module cache's files when cost attribution started; undefined before it started. */
export function modulesLoadedAtStart(): ReadonlySet<string> | undefined {
  return loadedAtStart;
}

let failureReported = false;

// An observer's bug must not cost the request its attribution.
function guarded(call: () => void): void {
  try {
    call();
  } catch (error) {
    if (failureReported) return;
    failureReported = true;
    reportProblem(`a cost observer (measureCost or the CI baseline recorder) failed and was skipped (reported once): ${describeError(error)}`);
  }
}
