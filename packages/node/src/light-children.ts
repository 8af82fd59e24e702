/**
 * Inside a request the sampler dropped, the spans of request-budget's own instrumentations
 * (queries, outgoing calls) are light spans (light-span.ts): their only reader is cost
 * attribution, so they skip the SDK. The request's root stays an SDK span — it is judged, counted
 * in the metrics and exported when it breaches — and so does every span of a sampled request.
 *
 * Off when breached requests are to be exported as whole traces (their children must be
 * recorded for that), and until the pipeline switches it on.
 */
import { SpanKind, TraceFlags, trace, type Context, type Span, type SpanOptions } from '@opentelemetry/api';
import { isTracingSuppressed, type InstrumentationScope } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { MEASUREMENT_ATTRIBUTE, ROOT_MARKER_ATTRIBUTE } from '@request-budget/core';
import { attributionOf } from './cost-span-processor';
import { describeError, reportProblem } from './diagnostics';
import { LightSpan } from './light-span';

let enabled = false;

/** Switches light spans for unsampled requests on or off (the pipeline, from the configuration). */
export function useLightChildren(on: boolean): void {
  enabled = on;
}

/**
 * A light span for a span started under `parentContext`, or undefined when it must be an SDK
 * span: its request is sampled (or there is none), it is a root of its own (a job, a message
 * received, a measurement), it runs in a measurement (measureCost), or it is a new request
 * arriving after its parent request ended.
 */
export function startLightChild(scope: InstrumentationScope, name: string, options: SpanOptions | undefined, parentContext: Context): Span | undefined {
  if (!enabled || options?.root === true) return undefined;
  try {
    return lightChild(scope, name, options, parentContext);
  } catch (error) {
    // The SDK span it falls back to is what it would have been without light spans.
    if (!failureReported) reportProblem(`a light span could not be started; an SDK span is used instead (reported once): ${describeError(error)}`);
    failureReported = true;
    return undefined;
  }
}

let failureReported = false;

function lightChild(scope: InstrumentationScope, name: string, options: SpanOptions | undefined, parentContext: Context): Span | undefined {
  const parent = trace.getSpan(parentContext);
  if (parent === undefined || (parent.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0) return undefined;
  const attribution = attributionOf(parent);
  if (attribution === undefined) return undefined;
  const kind = options?.kind ?? SpanKind.INTERNAL;
  if (kind === SpanKind.CONSUMER || options?.attributes?.[ROOT_MARKER_ATTRIBUTE] === true) return undefined;
  if (kind === SpanKind.SERVER && attribution.rootEnded) return undefined;
  // measureCost follows each outgoing call by its span id: a measurement keeps SDK spans.
  if ((attribution.root as unknown as ReadableSpan).attributes[MEASUREMENT_ATTRIBUTE] === true) return undefined;
  if (isTracingSuppressed(parentContext)) return undefined;
  const rootContext = attribution.root.spanContext();
  return new LightSpan(name, kind, options?.attributes, options?.startTime, parent as unknown as ReadableSpan, rootContext, scope, attribution.sink).started(
    parentContext,
  );
}
