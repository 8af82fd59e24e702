/**
 * Whether request-budget's span processors receive the process's spans. They do only on the
 * tracer provider registered globally, and the OpenTelemetry API keeps the first one and refuses
 * the others, silently (a `diag` line nobody sees). Two setups in one process — say
 * auto-instrumentations-node's register beside request-budget's, or an app that starts its own
 * NodeSDK under `--require @request-budget/node/register` — leave one of them receiving nothing.
 *
 * Every registration made through the API is watched; after each, a probe span started through
 * the global API tells whether it reaches request-budget's processors. The probe is never ended,
 * so no exporter ever sees it.
 */
import { ROOT_CONTEXT, trace, type TracerProvider } from '@opentelemetry/api';
import type { Span, SpanProcessor } from '@opentelemetry/sdk-trace';
import { describeError, reportProblem } from './diagnostics';

const PROBE_ATTRIBUTE = 'request_budget.registration_probe';

const FIX =
  'run one OpenTelemetry setup: either request-budget\'s register alone, or your own NodeSDK with requestBudgetComponents() spread into it (see the README, "Inside an existing OpenTelemetry setup")';

/** Notices the probe span; one of request-budget's span processors. */
export class RegistrationProbe implements SpanProcessor {
  private seen = false;

  onStart(span: Span): void {
    if (span.attributes[PROBE_ATTRIBUTE] === true) this.seen = true;
  }

  onEnd(): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }

  /** Whether a span started through the global API reaches this processor now. */
  receivesGlobalSpans(): boolean {
    this.seen = false;
    trace
      .getTracer('@request-budget/node')
      .startSpan('request-budget registration probe', { root: true, attributes: { [PROBE_ATTRIBUTE]: true } }, ROOT_CONTEXT);
    return this.seen;
  }
}

const reported = new Set<string>();
let watched: RegistrationProbe | undefined;

/**
 * Watches every global tracer provider registration from now on, reporting (once each) when
 * request-budget's processors are left out, or another SDK's are. Call before the SDK that holds
 * `probe` registers. The latest probe is the one asked.
 */
export function watchRegistrations(probe: RegistrationProbe): void {
  const firstWatch = watched === undefined;
  watched = probe;
  if (!firstWatch) return;
  try {
    const api = trace as typeof trace & { setGlobalTracerProvider(provider: TracerProvider): boolean };
    const register = api.setGlobalTracerProvider;
    api.setGlobalTracerProvider = function setGlobalTracerProvider(this: unknown, provider: TracerProvider): boolean {
      const registered = register.call(this, provider);
      checkAfterRegistration(registered);
      return registered;
    };
  } catch (error) {
    reportProblem(`could not watch tracer provider registrations; another OpenTelemetry setup in this process would go unnoticed: ${describeError(error)}`);
  }
}

/** Reports when request-budget's processors do not receive the spans. Returns whether they do. */
export function checkRegistration(): boolean {
  try {
    if (watched === undefined || watched.receivesGlobalSpans()) return true;
    reportOnce(
      'foreign first',
      `another OpenTelemetry tracer provider was registered before request-budget's (e.g. auto-instrumentations-node's register loaded first, or an SDK started earlier): spans go to it and request-budget records no cost. Fix: ${FIX}`,
    );
    return false;
  } catch (error) {
    reportOnce('probe failed', `could not check that request-budget receives the spans: ${describeError(error)}`);
    return true;
  }
}

function checkAfterRegistration(registered: boolean): void {
  if (!checkRegistration() || registered) return;
  reportOnce(
    'refused later',
    `another OpenTelemetry SDK tried to register its tracer provider after request-budget's and was refused by the OpenTelemetry API: its span processors and exporters receive nothing (request-budget's exporters send the spans). Fix: ${FIX}`,
  );
}

function reportOnce(key: string, message: string): void {
  if (reported.has(key)) return;
  reported.add(key);
  reportProblem(message);
}
