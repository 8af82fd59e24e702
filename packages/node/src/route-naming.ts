/**
 * The route template of a request (`/users/:id`) is what names its server span
 * (`GET /users/:id`), fills `http.route` and so picks its budget rule. Frameworks hand it to
 * instrumentation-http through the RPC metadata that instrumentation puts in each request's
 * context; instrumentation-http reads it when the response ends. This module makes the same
 * handover for what no framework instrumentation covers:
 * - {@link setRoute}, for apps that route requests themselves (plain `node:http`, or a framework
 *   request-budget does not instrument);
 * - {@link applyFrameworkRoute}, a last look at express's own `req.route` when the express
 *   instrumentation could not patch express (express loaded before request-budget started, its
 *   instrumentation turned off, or, with express layer spans on, express imported from an ES
 *   module under `--require`).
 */
import { context, SpanKind, type Span } from '@opentelemetry/api';
import { getRPCMetadata, RPCType, type RPCMetadata } from '@opentelemetry/core';
import { HTTP_METHOD_LEGACY, HTTP_REQUEST_METHOD, HTTP_ROUTE } from '@request-budget/core';
import { describeError, reportProblem } from './diagnostics';

const reported = new Set<string>();

// Marks the RPC metadata of a request whose route the app named with setRoute(): framework
// bridges that run later (Koa's, after the middleware chain) leave it alone.
const SET_BY_APP = Symbol('request-budget.route-set-by-app');
type MarkedMetadata = RPCMetadata & { [SET_BY_APP]?: true };

// Marks a request express's router handed to request-budget's route naming: what it left (a
// route, or none when no route answered) stands, and the req.route fallback stays out.
const ROUTED = Symbol('request-budget.express-routed');

/** Says that request-budget's express route naming saw this request (express-route-instrumentation.ts). */
export function markExpressRouted(request: object): void {
  (request as { [ROUTED]?: true })[ROUTED] = true;
}

/** Whether the app named this request's route itself (setRoute), which no framework overrides. */
export function isRouteSetByApp(metadata: RPCMetadata): boolean {
  return (metadata as MarkedMetadata)[SET_BY_APP] === true;
}

/** Reports a problem once per key for the life of the process. */
function reportOnce(key: string, message: string): void {
  if (reported.has(key)) return;
  reported.add(key);
  reportProblem(message);
}

/** The RPC metadata of the HTTP request the caller runs in, if any. */
export function activeHttpMetadata(): RPCMetadata | undefined {
  const metadata = getRPCMetadata(context.active());
  return metadata?.type === RPCType.HTTP ? metadata : undefined;
}

/**
 * Names the route of the request being handled: its server span becomes `GET /users/:id` and
 * carries `http.route` = `template`, so per-route budgets apply to it. For apps that route
 * requests themselves; call it in the request's handler, before the response ends. The last
 * call wins, over a framework's route too.
 *
 * `template` is the route pattern, never the raw path: `/users/:id`, not `/users/42` (one span
 * name and one budget rule per route, not per user).
 *
 * Never throws. Returns whether the route was recorded: false when request-budget is not
 * running, when called outside a request, or after its response has ended.
 *
 * @example
 * http.createServer((req, res) => {
 *   const match = /^\/users\/(\d+)$/.exec(req.url ?? '');
 *   if (match) setRoute('/users/:id');
 * });
 */
export function setRoute(template: string): boolean {
  try {
    if (typeof template !== 'string' || template.trim().length === 0) {
      reportOnce(
        'setRoute-argument',
        `setRoute() needs the route template as a non-empty string (e.g. "/users/:id"), got ${describeValue(template)}; the call is ignored`,
      );
      return false;
    }
    const metadata = activeHttpMetadata();
    if (metadata === undefined || !metadata.span.isRecording()) return false;
    metadata.route = template;
    (metadata as MarkedMetadata)[SET_BY_APP] = true;
    return true;
  } catch (error) {
    reportOnce('setRoute-failure', `setRoute() failed and the route was not recorded (reported once): ${describeError(error)}`);
    return false;
  }
}

/** What express leaves on a request it routed: the matched route and the mount path so far. */
interface ExpressRoutedRequest {
  readonly route?: { readonly path?: unknown };
  readonly baseUrl?: unknown;
  readonly method?: unknown;
}

/**
 * instrumentation-http's `applyCustomAttributesOnSpan`: runs when a server response has ended,
 * after instrumentation-http has applied the route it was given and before the span ends (so
 * before the cost record and the budget are written). When no route was given and express
 * routed the request on its root router, express's `req.route.path` is the template.
 *
 * Under a mounted router (`app.use('/api', router)`) `req.baseUrl` holds the mount path as
 * requested, parameters filled in, so no template can be rebuilt: that is said once instead.
 */
export function applyFrameworkRoute(span: Span, request: unknown): void {
  try {
    const recorded = span as Span & { readonly kind?: SpanKind; readonly attributes?: Readonly<Record<string, unknown>> };
    if (recorded.kind !== SpanKind.SERVER || !span.isRecording() || recorded.attributes?.[HTTP_ROUTE] !== undefined) return;
    const routed = request as (ExpressRoutedRequest & { [ROUTED]?: true }) | undefined;
    if (routed?.[ROUTED] === true) return;
    const template = routed?.route?.path;
    if (typeof template !== 'string' || template.length === 0) return;
    if (routed?.baseUrl !== '' && routed?.baseUrl !== undefined) {
      reportOnce(
        'express-mounted',
        'express is not instrumented (its instrumentation is disabled, or express was loaded before request-budget started, or, with REQUEST_BUDGET_EXPRESS_LAYER_SPANS, imported from an ES module under --require): routes under a mounted router (app.use(path, router)) get no http.route and fall to the budget defaults; fix: start request-budget first (`node --import @request-budget/node/register`), or call setRoute() in those handlers',
      );
      return;
    }
    // As instrumentation-http names a routed span: the request's own method.
    const method = routed?.method ?? recorded.attributes?.[HTTP_REQUEST_METHOD] ?? recorded.attributes?.[HTTP_METHOD_LEGACY];
    span.setAttribute(HTTP_ROUTE, template);
    span.updateName(typeof method === 'string' && method.length > 0 ? `${method} ${template}` : template);
  } catch (error) {
    reportOnce('framework-route-failure', `naming a request's route from express failed (reported once): ${describeError(error)}`);
  }
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  return value === null ? 'null' : typeof value;
}
