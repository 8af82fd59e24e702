/**
 * request-budget's hooks on instrumentations it did not create:
 * - an app's own instances (its NodeSDK's, e.g. getNodeAutoInstrumentations()), handed to
 *   requestBudgetComponents or addRequestBudgetHooks: each known one gets the hooks the cost
 *   record needs through `setConfig`, after any hook it already had;
 * - instances nobody hands over: another OpenTelemetry setup's instrumentation-pg or -mysql2,
 *   registered after request-budget's, replaces it (instrumentation-pg unwraps an earlier
 *   wrapper before wrapping). Its queries would then have no row count. Every instance of those
 *   two classes (as loaded from this package's dependencies) reads its config with the row hook
 *   added, so rows stay counted whichever instance patched the driver.
 */
import type { Instrumentation, InstrumentationConfig } from '@opentelemetry/instrumentation';
import { MySQL2Instrumentation } from '@opentelemetry/instrumentation-mysql2';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { describeError, reportProblem } from './diagnostics';
import { amqplibPublishHook } from './jobs/amqplib-jobs';
import { applyFrameworkRoute } from './route-naming';
import { HttpClientTimeoutInstrumentation } from './http-client-timeouts';
import { companionInstrumentations, mysql2ResponseHook, pgResponseHook, type InstrumentationName } from './instrumentations';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- hooks of every instrumentation
type Hook = ((...args: any[]) => unknown) & { [OURS]?: true };
type HookSet = Readonly<Record<string, Hook>>;

const OURS = Symbol('request-budget.hook');

/** Instrumentations request-budget knows, by the scope name their spans carry. */
const NAMES_BY_SCOPE: Readonly<Record<string, InstrumentationName>> = {
  '@opentelemetry/instrumentation-http': 'http',
  '@opentelemetry/instrumentation-express': 'express',
  '@fastify/otel': 'fastify',
  '@opentelemetry/instrumentation-koa': 'koa',
  '@opentelemetry/instrumentation-pg': 'pg',
  '@opentelemetry/instrumentation-mysql2': 'mysql2',
  '@opentelemetry/instrumentation-ioredis': 'ioredis',
  '@opentelemetry/instrumentation-redis': 'redis',
  '@opentelemetry/instrumentation-undici': 'undici',
  '@opentelemetry/instrumentation-mongodb': 'mongodb',
  '@opentelemetry/instrumentation-amqplib': 'amqplib',
};

/** Options of {@link addRequestBudgetHooks}. */
export interface AddHooksOptions {
  /**
   * Longest timeout that still counts an outgoing call as timed.
   * @default 30000
   */
  maxClientTimeoutMs?: number;
}

/**
 * Sets request-budget's hooks on the app's own instrumentations (pg and mysql2: rows; http and
 * undici: whether each outgoing call had a timeout; http: the route fallback) and returns them
 * with request-budget's companion instrumentations added (the pool-context fix, the Koa route,
 * the client timeout probes), ready for `new NodeSDK({ instrumentations })`. Hooks the app set
 * already run first. Instrumentations request-budget does not know are returned unchanged.
 */
export function addRequestBudgetHooks(
  instrumentations: readonly (Instrumentation | readonly Instrumentation[])[],
  options: AddHooksOptions = {},
): Instrumentation[] {
  const flat: Instrumentation[] = instrumentations.flat();
  const names = [...new Set(flat.map((i) => NAMES_BY_SCOPE[i.instrumentationName]).filter((n): n is InstrumentationName => n !== undefined))];
  const clientTimeouts = new HttpClientTimeoutInstrumentation({
    enabled: names.includes('http') || names.includes('undici'),
    ...(options.maxClientTimeoutMs !== undefined ? { maxClientTimeoutMs: options.maxClientTimeoutMs } : {}),
  });
  const hooks: Partial<Record<InstrumentationName, HookSet>> = {
    http: { ...clientTimeouts.httpHooks(), applyCustomAttributesOnSpan: applyFrameworkRoute },
    pg: { responseHook: pgResponseHook },
    mysql2: { responseHook: mysql2ResponseHook },
    undici: clientTimeouts.undiciHooks(),
    amqplib: { publishHook: amqplibPublishHook },
  };
  for (const instrumentation of flat) {
    const set = hooks[NAMES_BY_SCOPE[instrumentation.instrumentationName]];
    if (set !== undefined) setHooks(instrumentation, set);
  }
  const settings = { expressLayerSpans: true, fastifyHookSpans: true, koaLayerSpans: true, pgInstrumented: names.includes('pg'), clientTimeouts };
  return [...flat, ...companionInstrumentations(names, settings)];
}

/** The request-budget names of the known instrumentations among these. */
export function knownInstrumentationNames(instrumentations: readonly Instrumentation[]): InstrumentationName[] {
  return instrumentations.map((i) => NAMES_BY_SCOPE[i.instrumentationName]).filter((n): n is InstrumentationName => n !== undefined);
}

let driversHooked = false;

/**
 * Gives every instrumentation-pg and instrumentation-mysql2 instance (of the copies this package
 * loads) the row hook, chained after its own, when it reads its config. Idempotent.
 */
export function hookEveryDriverInstance(): void {
  if (driversHooked) return;
  driversHooked = true;
  try {
    hookClass(PgInstrumentation.prototype, { responseHook: pgResponseHook });
    hookClass(MySQL2Instrumentation.prototype, { responseHook: mysql2ResponseHook });
  } catch (error) {
    reportProblem(`could not add the row hook to other instrumentation-pg/-mysql2 instances; their rows may go uncounted: ${describeError(error)}`);
  }
}

function hookClass(prototype: { getConfig(): InstrumentationConfig }, hooks: HookSet): void {
  const readConfig = prototype.getConfig;
  const completed = new WeakMap<object, InstrumentationConfig>();
  prototype.getConfig = function getConfigWithCostHooks(this: unknown) {
    const config = readConfig.call(this);
    if (config === null || typeof config !== 'object') return config;
    let withHooks = completed.get(config);
    if (withHooks === undefined) completed.set(config, (withHooks = withCostHooks(config, hooks)));
    return withHooks;
  };
}

function setHooks(instrumentation: Instrumentation, hooks: HookSet): void {
  const config = instrumentation.getConfig();
  const updated = withCostHooks(config, hooks);
  if (updated !== config) instrumentation.setConfig(updated);
}

/** The config with each hook chained after the one it has; the same object when nothing changes. */
function withCostHooks<T extends InstrumentationConfig>(config: T, hooks: HookSet): T {
  let updated: T | undefined;
  for (const [key, ours] of Object.entries(hooks)) {
    const existing = (config as Record<string, unknown>)[key];
    const hook = chain(existing, ours);
    if (hook !== existing) (updated ??= { ...config } as T & Record<string, unknown>)[key as keyof T] = hook as T[keyof T];
  }
  return updated ?? config;
}

/**
 * The app's hook, then ours. Hooks that return span attributes (startOutgoingSpanHook,
 * startSpanHook) have theirs merged; ours never throws into the app.
 */
function chain(existing: unknown, ours: Hook): Hook {
  if (existing === ours || (typeof existing === 'function' && (existing as Hook)[OURS])) return existing as Hook;
  const guarded: Hook = function (this: unknown, ...args) {
    try {
      return ours.apply(this, args);
    } catch (error) {
      reportHookFailure(error);
      return undefined;
    }
  };
  const chained: Hook =
    typeof existing !== 'function'
      ? guarded
      : function (this: unknown, ...args) {
          const theirs = (existing as Hook).apply(this, args);
          const mine = guarded.apply(this, args);
          return isObject(theirs) || isObject(mine) ? { ...(isObject(theirs) ? theirs : {}), ...(isObject(mine) ? mine : {}) } : theirs;
        };
  chained[OURS] = true;
  return chained;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

let hookFailureReported = false;
function reportHookFailure(error: unknown): void {
  if (hookFailureReported) return;
  hookFailureReported = true;
  reportProblem(`a request-budget hook on an instrumentation failed (reported once; the app is unaffected): ${describeError(error)}`);
}
