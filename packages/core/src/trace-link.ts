/**
 * A link to one trace in the tracing UI the traces go to, from a template the operator writes
 * once: `http://jaeger:16686/trace/{traceId}`, `http://zipkin:9411/zipkin/traces/{traceId}`.
 * Alerts carry it (Alertmanager's generatorURL, `trace_url` in breach events), so whoever is
 * paged lands on the request that breached.
 */

/** What {@link traceLink} replaces with the trace id. */
export const TRACE_ID_PLACEHOLDER = '{traceId}';

/** The template with the trace id in place of every `{traceId}`. */
export function traceLink(template: string, traceId: string): string {
  return template.replaceAll(TRACE_ID_PLACEHOLDER, traceId);
}

/** Why the template cannot be used, or undefined when it can. */
export function traceUrlTemplateProblem(template: string): string | undefined {
  if (!template.includes(TRACE_ID_PLACEHOLDER)) return `has no ${TRACE_ID_PLACEHOLDER} to put the trace id in`;
  try {
    const url = new URL(traceLink(template, '0'.repeat(32)));
    if (url.protocol === 'http:' || url.protocol === 'https:') return undefined;
  } catch {
    // said below
  }
  return 'is not an http(s) URL';
}
