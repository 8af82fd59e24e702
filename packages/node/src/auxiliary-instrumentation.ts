/**
 * Instrumentations that only add to what a library's own instrumentation counts (the wire bytes
 * of pg's and mysql2's rows). Whether the library is counted is its own instrumentation's to
 * say: the coverage checks (library-coverage.ts, testing/instrumentation-check.ts) leave these
 * out, so they are never named to the user and never change a library's verdict. When one cannot
 * patch, only what it adds is missing (a request then has no `cost.db.bytes`, as documented).
 */
import type { Instrumentation } from '@opentelemetry/instrumentation';

const AUXILIARY = Symbol('request-budget.auxiliary-instrumentation');

/** Marks an instrumentation as auxiliary; called from its constructor. */
export function markAuxiliary(instrumentation: object): void {
  Object.defineProperty(instrumentation, AUXILIARY, { value: true });
}

export function isAuxiliary(instrumentation: Instrumentation): boolean {
  return (instrumentation as { [AUXILIARY]?: unknown })[AUXILIARY] === true;
}
