/**
 * Tells the spans of request-budget's own instrumentations (and of those it was handed and set
 * its hooks on) from the spans of another instance of the same instrumentation, registered by
 * another OpenTelemetry setup in the same process. Two undici instrumentations each trace every
 * fetch, side by side with nothing to tell them apart but who made them.
 *
 * Each own instrumentation gets a tracer provider that hands out the global tracers, wrapped so
 * that while one of them starts a span the span processors can ask {@link isStartingOwnSpan}.
 * Span processors run synchronously inside `startSpan`, so the answer is exact. Inside a request
 * the sampler dropped, the same tracers start light spans instead (light-children.ts).
 */
import { context, trace, type Context, type Span, type SpanOptions, type Tracer, type TracerOptions, type TracerProvider } from '@opentelemetry/api';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { startLightChild } from './light-children';

let startingOwn = 0;
const ownScopes = new Set<string>();
const MARKED = Symbol('request-budget.own-spans');

/** Whether the span now being started comes from an own instrumentation. */
export function isStartingOwnSpan(): boolean {
  return startingOwn > 0;
}

/** Whether request-budget has an instrumentation of this scope (say `@opentelemetry/instrumentation-pg`). */
export function isOwnScope(scopeName: string): boolean {
  return ownScopes.has(scopeName);
}

/**
 * Makes the spans of these instrumentations recognisable as own, whatever tracer provider they
 * are given later (registerInstrumentations, as NodeSDK.start() calls it, sets the global one).
 * Idempotent.
 */
export function markOwnSpans(instrumentations: readonly Instrumentation[]): void {
  for (const instrumentation of instrumentations) {
    const marked = instrumentation as Instrumentation & { [MARKED]?: true };
    if (marked[MARKED]) continue;
    marked[MARKED] = true;
    ownScopes.add(instrumentation.instrumentationName);
    const setTracerProvider = instrumentation.setTracerProvider;
    instrumentation.setTracerProvider = function setOwnTracerProvider(this: Instrumentation, provider: TracerProvider) {
      setTracerProvider.call(this, ownTracerProvider(provider));
    };
    instrumentation.setTracerProvider(trace.getTracerProvider());
  }
}

/** The provider's tracers, wrapped. */
function ownTracerProvider(provider: TracerProvider): TracerProvider {
  return {
    getTracer(name: string, version?: string, options?: TracerOptions): Tracer {
      return new OwnTracer(provider.getTracer(name, version, options), { name, version, schemaUrl: options?.schemaUrl });
    },
  };
}

class OwnTracer implements Tracer {
  constructor(
    private readonly inner: Tracer,
    private readonly scope: InstrumentationScope,
  ) {}

  startSpan(name: string, options?: SpanOptions, parent?: Context): Span {
    startingOwn += 1;
    try {
      // Inside an unsampled request, a light span that only cost attribution reads.
      return startLightChild(this.scope, name, options, parent ?? context.active()) ?? this.inner.startSpan(name, options, parent);
    } finally {
      startingOwn -= 1;
    }
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: [F] | [SpanOptions, F] | [SpanOptions, Context, F]): ReturnType<F> {
    const fn = rest[rest.length - 1] as F;
    const options = rest.length >= 2 ? (rest[0] as SpanOptions) : undefined;
    const parent = rest.length === 3 ? rest[1] : context.active();
    const span = this.startSpan(name, options, parent);
    return context.with(trace.setSpan(parent, span), fn as (span: Span) => ReturnType<F>, undefined, span);
  }
}
