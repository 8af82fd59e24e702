/**
 * Names a Koa request's route from @koa/router's `ctx._matchedRoute` once the middleware chain
 * has run, so the server span is `GET /users/:id` with `http.route` and the budget rule of that
 * route applies.
 *
 * instrumentation-koa hands the route over only from inside the router layers it wrapped when
 * `app.use(router.routes())` ran: a route added to the router after that call gets none, and
 * with its layer spans switched off (request-budget's default) it wraps no layer at all. Read
 * after the chain, the context holds the route that actually handled the request, nested
 * routers and prefixes included.
 */
import { InstrumentationBase, InstrumentationNodeModuleDefinition, type InstrumentationConfig } from '@opentelemetry/instrumentation';
import type { RPCMetadata } from '@opentelemetry/core';
import { describeError, reportProblem } from './diagnostics';
import { activeHttpMetadata, isRouteSetByApp } from './route-naming';
import { stringAttribute } from './string-attribute';

interface KoaContext {
  readonly _matchedRoute?: unknown;
}
type ComposedMiddleware = (ctx: KoaContext) => unknown;
type HandleRequest = (this: unknown, ctx: KoaContext, fnMiddleware: ComposedMiddleware) => unknown;
interface KoaClass {
  prototype: { handleRequest?: HandleRequest };
}
// Marks our wrapper, so that a second patch (the module loaded twice, or enabled again) does not
// stack another one, and unpatching never removes another tool's wrapper.
const OURS = Symbol('request-budget.koa-route');
const isOurs = (fn: unknown) => typeof fn === 'function' && (fn as { [OURS]?: true })[OURS] === true;

export class KoaRouteInstrumentation extends InstrumentationBase {
  private failureReported = false;

  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/koa-route', '0.1.0', config);
  }

  protected init() {
    // Koa 2 and 3 share Application#handleRequest(ctx, fnMiddleware). Koa 1 (generators) is not supported.
    return new InstrumentationNodeModuleDefinition(
      'koa',
      ['>=2.0.0 <4'],
      (exports: unknown) => {
        const prototype = koaClassOf(exports)?.prototype;
        if (typeof prototype?.handleRequest !== 'function') {
          reportProblem(
            'koa: Application#handleRequest not found; Koa routes are not named (http.route) and fall to the budget defaults; call setRoute() in handlers',
          );
          return exports;
        }
        if (isOurs(prototype.handleRequest)) return exports;
        this._wrap(prototype as { handleRequest: HandleRequest }, 'handleRequest', (original) => this.wrapHandleRequest(original));
        return exports;
      },
      (exports: unknown) => {
        const prototype = koaClassOf(exports)?.prototype;
        if (prototype !== undefined && isOurs(prototype.handleRequest)) this._unwrap(prototype, 'handleRequest');
      },
    );
  }

  private wrapHandleRequest(original: HandleRequest): HandleRequest {
    const instrumentation = this;
    const wrapped = function handleRequest(this: unknown, ctx: KoaContext, fnMiddleware: ComposedMiddleware) {
      let metadata: RPCMetadata | undefined;
      try {
        metadata = typeof fnMiddleware === 'function' ? activeHttpMetadata() : undefined;
      } catch (error) {
        instrumentation.reportFailure(error);
      }
      if (metadata === undefined) return original.call(this, ctx, fnMiddleware);
      const request = metadata;
      const name = () => instrumentation.nameRoute(ctx, request);
      const routed: ComposedMiddleware = (context) => {
        const result = fnMiddleware(context);
        if (typeof (result as Promise<unknown> | undefined)?.then !== 'function') {
          name();
          return result;
        }
        return (result as Promise<unknown>).then(
          (value) => {
            name();
            return value;
          },
          (error: unknown) => {
            name();
            throw error;
          },
        );
      };
      return original.call(this, ctx, routed);
    };
    Object.defineProperty(wrapped, OURS, { value: true });
    return wrapped;
  }

  /** Before Koa writes the response, hence before instrumentation-http reads the route. */
  private nameRoute(ctx: KoaContext, metadata: RPCMetadata): void {
    try {
      const template = routeTemplate(ctx?._matchedRoute);
      if (template === undefined || isRouteSetByApp(metadata)) return;
      if (template.length > 0) metadata.route = template;
    } catch (error) {
      this.reportFailure(error);
    }
  }

  private reportFailure(error: unknown): void {
    if (this.failureReported) return;
    this.failureReported = true;
    reportProblem(`naming a Koa request's route failed; Koa routes may fall to the budget defaults (reported once): ${describeError(error)}`);
  }
}

/** The Application class, from `require('koa')` or from the namespace of `import 'koa'`. */
function koaClassOf(exports: unknown): KoaClass | undefined {
  const module = exports as { [Symbol.toStringTag]?: unknown; default?: unknown } | undefined;
  const candidate = module?.[Symbol.toStringTag] === 'Module' ? module.default : module;
  return typeof candidate === 'function' ? candidate : undefined;
}

/** @koa/router's path of the matched route: a template, or the RegExp a route was declared with (as its literal). */
function routeTemplate(matched: unknown): string | undefined {
  return matched instanceof RegExp ? matched.toString() : stringAttribute(matched);
}
