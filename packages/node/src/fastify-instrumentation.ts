/**
 * @fastify/otel, Fastify's own instrumentation, configured for the cost record. It registers on
 * every Fastify instance as it is created (through the `fastify.initialization` diagnostics
 * channel, so however fastify was loaded, ES module or CommonJS) and, in its onRequest hook,
 * hands the route template (`/users/:id`) to instrumentation-http's server span, which is then
 * named `GET /users/:id` and carries `http.route`.
 *
 * It also starts one INTERNAL `request` span per request, a child of the server span: that one
 * carries the route handover and cannot be turned off. Its span per hook and per route handler
 * can: they add no cost figure, and measured on the fixtures of test/stacks (CPU per request of
 * /health, 6,000 requests, median of 3 rounds) they cost 268 → 310 µs on Fastify 5 and 308 → 351 µs
 * on NestJS on Fastify, so they are off unless asked for (like express's layer spans).
 */
import { FastifyOtelInstrumentation } from '@fastify/otel';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { describeError, reportProblem } from './diagnostics';

/** @param hookSpans keep the span per hook and per route handler */
export function createFastifyInstrumentation(hookSpans: boolean): Instrumentation {
  const config = {
    registerOnInitialization: true,
    ...(hookSpans ? {} : { instrumentHooks: false, instrumentHandler: false }),
  };
  try {
    return new FastifyOtelInstrumentation(config);
  } catch (error) {
    // It throws on a bad OTEL_FASTIFY_IGNORE_PATHS (an empty one): that must not cost the app
    // its instrumentation altogether.
    reportProblem(`@fastify/otel rejected its configuration (${describeError(error)}); OTEL_FASTIFY_IGNORE_PATHS is ignored`);
    return new FastifyOtelInstrumentation({ ...config, ignorePaths: () => false });
  }
}
