/**
 * Names an express request's route (`GET /api/:v/users/:id`) and nothing else: the route
 * template goes into the request's RPC metadata, where instrumentation-http reads it for the
 * server span's name and `http.route` (see route-naming.ts). It replaces instrumentation-express
 * when its layer spans are off (request-budget's default): that one still wraps every layer and
 * rebuilds the route in each (bench/route-cost-micro.cjs: ≈ 1 µs a request on one route, ≈ 5.6 µs
 * behind five middlewares and a mounted router, against ≈ 1–2 µs here), and under `--require` it
 * misses express imported from an ES module, whose `router` package this one patches.
 *
 * How: each layer added by `use()` or `route()` (app.use, app.get, router.use...) is tagged with
 * the path pattern it was given; when the router enters a tagged layer, the pattern is appended
 * to the mount path of the router it belongs to. Mount paths are built from those patterns,
 * never from `req.baseUrl`, which holds the parameters filled in (`/api/v2`, not `/api/:v`).
 * A route entered sets the template; leaving a route or a mounted layer without an error and
 * without having answered (it called `next()`) restores what was there before, so a request no
 * route answers keeps no route. An error leaves the route in place: the error handler answers
 * for it.
 *
 * Templates: a string pattern as written, joined to its mount paths (`/api/` + `/users` is
 * `/api/users`; a route `/` under `/api` is `/api`); a RegExp as its literal (`/^\/item\/(\d+)$/`);
 * an array as its patterns joined with `,` (`/a,/b/:id`), as instrumentation-express has them.
 * A middleware mounted at a path that answers itself (`app.use('/static', serveStatic(...))`)
 * names the request after its mount path.
 *
 * Patched: express 5's `router` package (2.x: Router#use, Router#route, Layer#handleRequest),
 * also when express itself was imported from an ES module; express 4.8+ (lib/router).
 */
import type { RPCMetadata } from '@opentelemetry/core';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';
import { describeError, reportProblem } from './diagnostics';
import { installLayer, removeLayer } from './prototype-layer';
import { activeHttpMetadata, isRouteSetByApp, markExpressRouted } from './route-naming';

const LAYER_NAME = 'request-budget.express-route';
/** On a router layer: what its pattern adds to the template ('' for a middleware at `/`). */
const PART = Symbol('request-budget.express-route.part');
/** On a request: the mount path of the router handling it now. */
const MOUNT = Symbol('request-budget.express-route.mount');

interface RouterLayer {
  route?: unknown;
  [PART]?: string;
}
interface RouterLike {
  stack?: RouterLayer[];
}
interface RoutedRequest {
  [MOUNT]?: string;
}
interface Response {
  readonly headersSent?: boolean;
}
type Next = (...args: unknown[]) => unknown;
interface Prototype {
  prototype?: object;
}

export class ExpressRouteInstrumentation extends InstrumentationBase {
  private failureReported = false;

  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/express-route', '0.1.0', config);
  }

  protected init() {
    return [
      // Express 5 routes with the `router` package, required from express's CommonJS code even
      // when the app imports express from an ES module.
      new InstrumentationNodeModuleDefinition(
        'router',
        ['>=2 <3'],
        (exports: unknown) => {
          this.patchRouter(routerClassOf(exports)?.prototype);
          return exports;
        },
        (exports: unknown) => this.unpatchRouter(routerClassOf(exports)?.prototype),
        [
          new InstrumentationNodeModuleFile(
            'router/lib/layer.js',
            ['>=2 <3'],
            (Layer: Prototype) => {
              this.patchLayer(Layer?.prototype, 'handleRequest');
              return Layer;
            },
            (Layer?: Prototype) => removeLayer(Layer?.prototype, 'handleRequest', LAYER_NAME),
          ),
        ],
      ),
      // Express 4 has its router inside; express 5 is covered through `router` above.
      new InstrumentationNodeModuleDefinition('express', ['>=4.8.0 <6'], undefined, undefined, [
        new InstrumentationNodeModuleFile(
          'express/lib/router/index.js',
          ['>=4.8.0 <5'],
          (proto: object) => {
            this.patchRouter(proto);
            return proto;
          },
          (proto?: object) => this.unpatchRouter(proto),
        ),
        new InstrumentationNodeModuleFile(
          'express/lib/router/layer.js',
          ['>=4.8.0 <5'],
          (Layer: Prototype) => {
            this.patchLayer(Layer?.prototype, 'handle_request');
            return Layer;
          },
          (Layer?: Prototype) => removeLayer(Layer?.prototype, 'handle_request', LAYER_NAME),
        ),
      ]),
    ];
  }

  /** Router#use and Router#route tag the layers they add with their path pattern. */
  private patchRouter(proto: object | undefined): void {
    const instrumentation = this;
    const tagging = (method: 'use' | 'route', pathOf: (args: unknown[]) => unknown, isRoute: boolean) =>
      installLayer(proto, method, LAYER_NAME, (original, state) => {
        return function tagLayers(this: RouterLike, ...args: unknown[]) {
          const before = state.active ? this?.stack?.length : undefined;
          const result = original.apply(this, args);
          if (before !== undefined) instrumentation.tag(this.stack, before, pathOf(args), isRoute);
          return result;
        };
      });
    if (!tagging('use', usePath, false) || !tagging('route', (args) => args[0], true)) {
      reportProblem(
        'express: its router has no use() or route(); express routes are not named (http.route) and fall to the budget defaults; call setRoute() in handlers',
      );
    }
  }

  private unpatchRouter(proto: object | undefined): void {
    removeLayer(proto, 'use', LAYER_NAME);
    removeLayer(proto, 'route', LAYER_NAME);
  }

  private tag(stack: RouterLayer[] | undefined, from: number, path: unknown, isRoute: boolean): void {
    try {
      if (!Array.isArray(stack)) return;
      const part = patternText(path);
      if (part === undefined) return;
      for (let i = from; i < stack.length; i += 1) stack[i][PART] = isRoute || part !== '/' ? part : '';
    } catch (error) {
      this.reportFailure(error);
    }
  }

  /** The router's call into a layer: where the template is built, request by request. */
  private patchLayer(prototype: object | undefined, method: 'handleRequest' | 'handle_request'): void {
    const instrumentation = this;
    const patched = installLayer(prototype, method, LAYER_NAME, (original, state) => {
      return function enterLayer(this: RouterLayer, req: RoutedRequest, res: Response, next: Next) {
        const part = this?.[PART];
        // Untagged: a handler inside a route, or a layer added before express was patched.
        if (part === undefined || !state.active || (part === '' && this.route === undefined)) return original.call(this, req, res, next);
        const leave = instrumentation.enter(this, part, req, res, next);
        return original.call(this, req, res, leave ?? next);
      };
    });
    if (!patched) reportProblem(`express: its router layers have no ${method}(); express routes are not named (http.route) and fall to the budget defaults`);
  }

  /**
   * Records what entering this layer means for the request's route; returns the `next` that
   * undoes it when the layer passes the request on, or undefined to leave `next` alone.
   */
  private enter(layer: RouterLayer, part: string, req: RoutedRequest, res: Response, next: Next): Next | undefined {
    try {
      const metadata = activeHttpMetadata();
      if (metadata === undefined || typeof next !== 'function') return undefined;
      markExpressRouted(req);
      const mount = req[MOUNT];
      const path = joinPath(mount ?? '', part);
      const isRoute = layer.route !== undefined;
      const previous = metadata.route;
      const ownedByApp = isRouteSetByApp(metadata);
      if (!ownedByApp) metadata.route = path;
      if (!isRoute) req[MOUNT] = path;
      return function leaveLayer(this: unknown, ...args: unknown[]) {
        if (!isRoute) req[MOUNT] = mount;
        // A layer that answered and then called next() (for a logger after it, say) keeps its route.
        if (!ownedByApp && !isError(args[0]) && res?.headersSent !== true && !isRouteSetByApp(metadata)) restoreRoute(metadata, previous);
        return next.apply(this, args);
      };
    } catch (error) {
      this.reportFailure(error);
      return undefined;
    }
  }

  private reportFailure(error: unknown): void {
    if (this.failureReported) return;
    this.failureReported = true;
    reportProblem(`naming an express request's route failed; express routes may fall to the budget defaults (reported once): ${describeError(error)}`);
  }
}

/** The path argument of Router#use, as the router reads it: none (`/`) when the first argument is a handler. */
function usePath(args: unknown[]): unknown {
  let first = args[0];
  while (Array.isArray(first) && first.length !== 0) first = first[0];
  return typeof first === 'function' ? '/' : args[0];
}

/** A layer's path pattern as template text; undefined for what express would not route by. */
function patternText(path: unknown): string | undefined {
  if (typeof path === 'string') return path;
  if (path instanceof RegExp || typeof path === 'number') return path.toString();
  if (!Array.isArray(path)) return undefined;
  const parts = path.flat(Infinity).map((item: unknown) => patternText(item) ?? '');
  return parts.length === 1 ? parts[0] : parts.join(',');
}

/** `mount` + `part`, with one slash between them; a route at `/` of a mounted router is the mount path. */
function joinPath(mount: string, part: string): string {
  if (mount.length === 0) return part;
  if (part === '/' || part.length === 0) return mount;
  return mount.endsWith('/') && part.startsWith('/') ? mount + part.slice(1) : mount + part;
}

/** What `next()` carries that is not an error: nothing, or the router's own `'route'` and `'router'` signals. */
function isError(value: unknown): boolean {
  return value !== undefined && value !== null && value !== 'route' && value !== 'router';
}

function restoreRoute(metadata: RPCMetadata, previous: string | undefined): void {
  // instrumentation-http reads an undefined route as none; no `delete`, which would slow the object down.
  metadata.route = previous;
}

/** The Router class from `require('router')`, or from the namespace of `import 'router'`. */
function routerClassOf(exports: unknown): Prototype | undefined {
  const module = exports as { [Symbol.toStringTag]?: unknown; default?: unknown } | undefined;
  const candidate = module?.[Symbol.toStringTag] === 'Module' ? module.default : module;
  return typeof candidate === 'function' ? candidate : undefined;
}
