/**
 * pg-boss traces its own jobs (a CONSUMER `process <queue>` span per handler call), so its jobs
 * are roots even when request-budget's pg-boss instrumentation never patched it: pg-boss was
 * imported as an ES module under `--require` (no ES module hook), or loaded before request-budget
 * started. Those roots count pg-boss's own completion queries, and carry no job name of
 * request-budget's (only pg-boss's `messaging.destination.name`). Never silently: the first such
 * span is reported, once, with the fix. Library coverage covers the instrumentation turned off.
 */
import { SpanKind, type Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { JOB_NAME_ATTRIBUTE, MESSAGING_SYSTEM } from '@request-budget/core';
import { reportProblem } from '../diagnostics';
import { PG_BOSS_SYSTEM, pgBossInstrumentationState } from './pg-boss-instrumentation';

export class UnpatchedPgBossCheck implements SpanProcessor {
  private done = false;

  onStart(_span: Span, _parentContext: Context): void {}

  onEnding(span: Span): void {
    if (this.done || span.kind !== SpanKind.CONSUMER) return;
    try {
      if (span.attributes[MESSAGING_SYSTEM] !== PG_BOSS_SYSTEM || span.attributes[JOB_NAME_ATTRIBUTE] !== undefined) return;
      const state = pgBossInstrumentationState();
      if (!state.enabled || state.patched) return;
      this.done = true;
      reportProblem(
        "pg-boss runs jobs request-budget's pg-boss instrumentation never patched (pg-boss imported as an ES module under --require, or loaded before request-budget started): their cost records (pg-boss's own `process <queue>` spans) also count pg-boss's own completion queries; fix: start the app with `node --import @request-budget/node/register`",
      );
    } catch {
      this.done = true; // a check that fails stays quiet; the jobs run as before
    }
  }

  onEnd(_span: ReadableSpan): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
