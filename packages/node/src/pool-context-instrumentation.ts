/**
 * Keeps connection-pool callbacks in the context of the code that asked for the connection.
 *
 * When a pool is exhausted, pg-pool and mysql2 queue the caller's callback and call it later
 * from whichever caller releases a connection, inside that caller's async context. A query made
 * in the callback is then parented to the wrong request. instrumentation-pg rebinds the callback
 * only when the caller has a span, so a query from background work (no span) is attributed to
 * the request that happened to release the connection; mysql2's pool is not rebound at all,
 * nor is node-redis's RedisClientPool (its `execute(fn)` queues `fn` the same way).
 * Binding every callback to the caller's context, the empty one included, fixes all three.
 */
import { context, trace } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- pool methods take any callback shape
type Callback = (...args: any[]) => unknown;
const LAYER = Symbol('request-budget.pool-callback-layer');
const ORIGINAL = Symbol('request-budget.pool-callback-original');
interface PoolPrototype {
  connect?: (callback?: Callback) => unknown;
  getConnection?: (callback?: Callback) => unknown;
  /** node-redis RedisClientPool: runs `fn(client)` now, or queued until a client is returned. */
  execute?: (fn?: Callback) => unknown;
}
interface PoolClass {
  prototype: PoolPrototype;
}

export interface PoolContextConfig extends InstrumentationConfig {
  /**
   * instrumentation-pg is active and rebinds pg-pool callbacks of callers that have a span:
   * those are left to it, and only span-less callers (background work) are bound here.
   */
  pgBindsCallersWithSpan?: boolean;
}

export class PoolContextInstrumentation extends InstrumentationBase<PoolContextConfig> {
  constructor(config: PoolContextConfig = {}) {
    super('@request-budget/pool-context', '0.1.0', config);
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition(
        'pg-pool',
        ['>=2 <4'],
        (Pool: PoolClass) => this.patch(Pool, 'connect', this.getConfig().pgBindsCallersWithSpan === true),
        (Pool?: PoolClass) => this.unpatch(Pool, 'connect'),
      ),
      new InstrumentationNodeModuleDefinition('mysql2', ['>=2 <4'], undefined, undefined, [
        new InstrumentationNodeModuleFile(
          'mysql2/lib/base/pool.js',
          ['>=3.11 <4'],
          (BasePool: PoolClass) => this.patch(BasePool, 'getConnection', false),
          (BasePool?: PoolClass) => this.unpatch(BasePool, 'getConnection'),
        ),
        new InstrumentationNodeModuleFile(
          'mysql2/lib/pool.js',
          ['>=2 <3.11'],
          (Pool: PoolClass) => this.patch(Pool, 'getConnection', false),
          (Pool?: PoolClass) => this.unpatch(Pool, 'getConnection'),
        ),
      ]),
      // node-redis runs a queued task from the `.finally` of whichever task returns a client.
      new InstrumentationNodeModuleDefinition('@redis/client', ['^5.0.0', '^6.0.0'], undefined, undefined, [
        new InstrumentationNodeModuleFile(
          '@redis/client/dist/lib/client/pool.js',
          ['^5.0.0', '^6.0.0'],
          (exports: { RedisClientPool?: PoolClass }) => {
            if (exports?.RedisClientPool !== undefined) this.patch(exports.RedisClientPool, 'execute', false);
            return exports;
          },
          (exports?: { RedisClientPool?: PoolClass }) => this.unpatch(exports?.RedisClientPool, 'execute'),
        ),
      ]),
    ];
  }

  /**
   * Wraps the pool class's method in place and hands the module back unchanged. Not through
   * `_wrap`: that unwraps any earlier wrapper first, which would remove instrumentation-pg's own
   * `pg-pool.connect` span. Without shimmer's marker, the two wrappers stack in either order.
   * Enabled again after a disable, the existing layer is switched back on rather than stacked.
   */
  private patch(Pool: PoolClass, method: keyof PoolPrototype, onlyWithoutSpan: boolean): PoolClass {
    const current = Pool?.prototype?.[method];
    if (typeof current !== 'function') return Pool;
    const existing = findOurLayer(current);
    if (existing !== undefined) {
      existing.active = true;
      return Pool;
    }
    const state: LayerState = { active: true };
    const original = current;
    const bound = function bindCallbackToCaller(this: unknown, callback?: Callback) {
      const active = context.active();
      const bind = state.active && typeof callback === 'function' && !(onlyWithoutSpan && trace.getSpan(active) !== undefined);
      const forwarded = bind ? context.bind(active, callback) : callback;
      return original.call(this, forwarded);
    };
    Object.defineProperty(bound, LAYER, { value: state });
    Object.defineProperty(bound, ORIGINAL, { value: original });
    Pool.prototype[method] = bound;
    return Pool;
  }

  /**
   * Turns our layer into a pass-through, and takes it out when it is still on top (another
   * instrumentation may have wrapped it since, and unwraps to it).
   */
  private unpatch(Pool: PoolClass | undefined, method: keyof PoolPrototype): void {
    const current = Pool?.prototype?.[method];
    if (Pool === undefined || typeof current !== 'function') return;
    const layer = findOurLayer(current);
    if (layer === undefined) return;
    layer.active = false;
    const original = (current as { [ORIGINAL]?: Callback })[ORIGINAL];
    if (original !== undefined) Pool.prototype[method] = original;
  }
}

interface LayerState {
  active: boolean;
}

/** Our layer in a chain of wrappers (shimmer's `__original` links), if it is there. */
function findOurLayer(fn: Callback): LayerState | undefined {
  for (let layer: Callback | undefined = fn; layer !== undefined; layer = (layer as { __original?: Callback }).__original) {
    const state = (layer as { [LAYER]?: LayerState })[LAYER];
    if (state !== undefined) return state;
  }
  return undefined;
}
