/**
 * Says when spans could not be exported, with the cause: the SDK's exporters fail silently
 * unless OTEL_LOG_LEVEL is raised, which hides a backend that is down. One line for the first
 * failure, then at most one a minute with the count since; and one when exports recover. Every
 * failed span is also handed to `onFailedSpans` (the export failures metric).
 */
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace';

/** Shortest time between two lines about the same exporter. */
export const EXPORT_FAILURE_REPORT_INTERVAL_MS = 60_000;

export interface ReportingExporterOptions {
  /** Told the number of spans of each failed export. @default nothing */
  readonly onFailedSpans?: (spans: number) => void;
  /** @default Date.now */
  readonly now?: () => number;
}

export class ReportingExporter implements SpanExporter {
  private failedSinceReport = 0;
  private lastReportMs = -Infinity;
  private failing = false;
  private readonly now: () => number;
  private readonly onFailedSpans: ((spans: number) => void) | undefined;

  constructor(
    private readonly inner: SpanExporter,
    private readonly target: string,
    private readonly report: (message: string) => void,
    options: ReportingExporterOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.onFailedSpans = options.onFailedSpans;
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      try {
        this.observe(result, spans.length);
      } finally {
        resultCallback(result);
      }
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }

  private observe(result: ExportResult, spans: number): void {
    if (result.code === ExportResultCode.SUCCESS) {
      if (this.failing) this.report(`exporting to ${this.target} works again`);
      this.failing = false;
      this.failedSinceReport = 0;
      return;
    }
    this.failing = true;
    this.failedSinceReport += spans;
    try {
      this.onFailedSpans?.(spans);
    } catch {
      // Counting must not stop the line below, nor reach the exporter's caller.
    }
    const now = this.now();
    if (now - this.lastReportMs < EXPORT_FAILURE_REPORT_INTERVAL_MS) return;
    this.report(
      `could not export ${this.failedSinceReport} span(s) to ${this.target}: ${describe(result.error)}; they are dropped (said at most once a minute)`,
    );
    this.lastReportMs = now;
    this.failedSinceReport = 0;
  }
}

function describe(error: Error | undefined): string {
  if (error === undefined) return 'unknown error';
  const cause = (error as Error & { cause?: unknown; code?: string }).cause;
  const code = (error as Error & { code?: string }).code;
  const causeText = cause instanceof Error ? ((cause as Error & { code?: string }).code ?? cause.message) : undefined;
  return [error.message, code, causeText].filter((part) => part !== undefined && part !== '').join(' — ');
}
