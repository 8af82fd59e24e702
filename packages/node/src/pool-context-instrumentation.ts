/**
 * Keeps connection-pool callbacks in the context of the code that asked for the connection.
 *
 * When a pool is exhausted, pg-pool and mysql2 queue the caller's callback and call it later
 * from whichever caller releases a connection, inside that caller's async context. A query made
 * in the callback is then parented to the wrong request. instrumentation-pg rebinds the callback
 * only when the caller has a span, so a query from background work (no span) is attributed to
 * the request that happened to release the connection; mysql2's pool is not rebound at all.
 * Binding every callback to the caller's context, the empty one included, fixes both.
 */
import { context } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';

type Callback = (...args: unknown[]) => unknown;
const BOUND = Symbol('request-budget.pool-callback-bound');
const RESTORE = Symbol('request-budget.pool-callback-restore');
const ORIGINAL = Symbol('request-budget.pool-callback-original');
interface PoolPrototype {
  connect?: (callback?: Callback) => unknown;
  getConnection?: (callback?: Callback) => unknown;
}
interface PoolClass {
  prototype: PoolPrototype;
}

export class PoolContextInstrumentation extends InstrumentationBase {
  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/pool-context', '0.1.0', config);
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition(
        'pg-pool',
        ['>=2 <4'],
        (Pool: PoolClass) => this.patch(Pool, 'connect'),
        (Pool?: PoolClass) => this.unpatch(Pool, 'connect'),
      ),
      new InstrumentationNodeModuleDefinition('mysql2', ['>=2 <4'], undefined, undefined, [
        new InstrumentationNodeModuleFile(
          'mysql2/lib/base/pool.js',
          ['>=3.11 <4'],
          (BasePool: PoolClass) => this.patch(BasePool, 'getConnection'),
          (BasePool?: PoolClass) => this.unpatch(BasePool, 'getConnection'),
        ),
        new InstrumentationNodeModuleFile(
          'mysql2/lib/pool.js',
          ['>=2 <3.11'],
          (Pool: PoolClass) => this.patch(Pool, 'getConnection'),
          (Pool?: PoolClass) => this.unpatch(Pool, 'getConnection'),
        ),
      ]),
    ];
  }

  /**
   * Wraps the pool class's method in place and hands the module back unchanged. Not through
   * `_wrap`: that unwraps any earlier wrapper first, which would remove instrumentation-pg's own
   * `pg-pool.connect` span. Without shimmer's marker, the two wrappers stack in either order.
   */
  private patch(Pool: PoolClass, method: keyof PoolPrototype): PoolClass {
    const original = Pool?.prototype?.[method];
    if (typeof original !== 'function' || (original as { [BOUND]?: true })[BOUND]) return Pool;
    const state = { active: true };
    const bound = function bindCallbackToCaller(this: unknown, callback?: Callback) {
      const forwarded = state.active && typeof callback === 'function' ? context.bind(context.active(), callback) : callback;
      return original.call(this, forwarded);
    };
    Object.assign(bound, { [BOUND]: true, [RESTORE]: () => (state.active = false), [ORIGINAL]: original });
    Pool.prototype[method] = bound;
    return Pool;
  }

  /** Restores the method when ours is still on top; otherwise turns ours into a pass-through. */
  private unpatch(Pool: PoolClass | undefined, method: keyof PoolPrototype): void {
    const current = Pool?.prototype?.[method] as (Callback & { [RESTORE]?: () => void; [ORIGINAL]?: Callback }) | undefined;
    if (Pool === undefined || current === undefined) return;
    let wrapper: typeof current | undefined = current;
    while (wrapper !== undefined && wrapper[RESTORE] === undefined) wrapper = (wrapper as { __original?: typeof current }).__original;
    wrapper?.[RESTORE]?.();
    if (wrapper === current && current[ORIGINAL] !== undefined) Pool.prototype[method] = current[ORIGINAL] as PoolPrototype[typeof method];
  }
}
