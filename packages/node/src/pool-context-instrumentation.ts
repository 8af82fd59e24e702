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

  /** Wraps the pool class's method in place and hands the module back unchanged. */
  private patch(Pool: PoolClass, method: keyof PoolPrototype): PoolClass {
    if (typeof Pool?.prototype?.[method] !== 'function') return Pool;
    this._wrap(Pool.prototype, method, (original) =>
      function bindCallbackToCaller(this: unknown, callback?: Callback) {
        const bound = typeof callback === 'function' ? context.bind(context.active(), callback) : callback;
        return original!.call(this, bound);
      },
    );
    return Pool;
  }

  private unpatch(Pool: PoolClass | undefined, method: keyof PoolPrototype): void {
    if (Pool?.prototype !== undefined) this._unwrap(Pool.prototype, method);
  }
}
