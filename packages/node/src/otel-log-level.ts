/**
 * OTEL_LOG_LEVEL as the OpenTelemetry SDKs honour it: OpenTelemetry's own `diag` lines on the
 * console at that level. NodeSDK's constructor sets that logger, but start() builds the
 * instrumentations, the exporters and the cost meter provider before it: what they say then
 * (an exporter's configuration warning, a batch size the SDK corrects, resource detection, a
 * module loaded before its instrumentation) went nowhere. So the logger is set first, and given
 * back just before NodeSDK is made, whose constructor sets it again from the same variable
 * without an "overwritten logger" warning (as auto-instrumentations-node's register does).
 */
import { DiagConsoleLogger, diag, type DiagLogLevel } from '@opentelemetry/api';

/** Sets the console logger at `level` (none when undefined); returns what gives it back. */
export function useDiagLogLevel(level: DiagLogLevel | undefined): () => void {
  if (level === undefined) return () => {};
  diag.setLogger(new DiagConsoleLogger(), { logLevel: level, suppressOverrideMessage: true });
  return () => diag.disable();
}
