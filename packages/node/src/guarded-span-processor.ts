/**
 * Wraps a span processor supplied by the user so that an exception from it never reaches the
 * app's `span.end()` (the SDK's multi-processor does not catch). The first failure is reported.
 */
import type { Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { describeError, reportProblem } from './diagnostics';

export class GuardedSpanProcessor implements SpanProcessor {
  private failureReported = false;

  constructor(private readonly inner: SpanProcessor) {}

  onStart(span: Span, parentContext: Context): void {
    this.guard('onStart', () => this.inner.onStart(span, parentContext));
  }

  onEnding(span: Span): void {
    this.guard('onEnding', () => this.inner.onEnding?.(span));
  }

  onEnd(span: ReadableSpan): void {
    this.guard('onEnd', () => this.inner.onEnd(span));
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush().catch((error) => this.report('forceFlush', error));
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown().catch((error) => this.report('shutdown', error));
  }

  private guard(hook: string, call: () => void): void {
    try {
      call();
    } catch (error) {
      this.report(hook, error);
    }
  }

  private report(hook: string, error: unknown): void {
    if (this.failureReported) return;
    this.failureReported = true;
    reportProblem(`a span processor passed to start() threw in ${hook} (reported once; the app is unaffected): ${describeError(error)}`);
  }
}
