/**
 * Lets the `postgres:query` channel subscriber see the postgres.js Query object whose execution
 * it is told about. postgres.js publishes the start of a query synchronously from
 * `Query.prototype.run`, with a context object that does not link back to the query; the
 * query is needed for what the channel does not carry: the rows of every batch of a cursor,
 * and the statements of a batch. Wrapping `run` to note the query for the duration of that
 * synchronous call gives the subscriber both.
 *
 * postgres.js does not export its Query class, so its prototype is reached through a query made
 * by a throwaway client: creating a client and a query opens no connection and runs nothing
 * (a query runs only once awaited or executed).
 */

/** A postgres.js Query, as far as it is read here. */
export interface PostgresJsQuery {
  cursorFn?: unknown;
  parts?: unknown;
  readonly text?: unknown;
}

interface QueryPrototype {
  run?: (this: PostgresJsQuery, ...args: unknown[]) => unknown;
}

type PostgresFactory = (options: Record<string, unknown>) => { unsafe?: (text: string) => object };

type Run = (this: PostgresJsQuery, ...args: unknown[]) => unknown;

/** Our layer over `run`, kept on the prototype so it is found again after a disable. */
interface RunLayer {
  readonly original: Run;
  readonly wrapper: Run;
  active: boolean;
}

const LAYER = Symbol('request-budget.postgres-js.run-layer');
type LayeredPrototype = QueryPrototype & { [LAYER]?: RunLayer };

let running: PostgresJsQuery | undefined;

/** The query whose `run` is on the stack right now, if any. */
export function runningQuery(): PostgresJsQuery | undefined {
  return running;
}

/** The prototype of postgres.js's Query class, from the module's default export. */
export function queryPrototypeOf(moduleExports: unknown): object {
  const factory = ((moduleExports as { default?: unknown } | null)?.default ?? moduleExports) as PostgresFactory;
  if (typeof factory !== 'function') throw new Error('the module has no default export function');
  // Nothing here connects: no subscriber client, no type lookup, and no query is executed.
  const client = factory({ host: '127.0.0.1', port: 5432, database: 'probe', user: 'probe', max: 1, fetch_types: false, no_subscribe: true });
  const query = client.unsafe?.('SELECT 1');
  const prototype = query === undefined ? undefined : Object.getPrototypeOf(query);
  if (typeof (prototype as QueryPrototype | undefined)?.run !== 'function') throw new Error('its queries have no run() method');
  return prototype as object;
}

/**
 * Wraps `run` to note the running query; returns whether it is wrapped now. Enabled again
 * after a disable, the existing layer is switched back on rather than stacked.
 */
export function exposeRunningQuery(prototype: object): boolean {
  const target = prototype as LayeredPrototype;
  const existing = target[LAYER];
  if (existing !== undefined) {
    existing.active = true;
    return true;
  }
  const original = target.run;
  if (typeof original !== 'function') return false;
  const layer: RunLayer = {
    original,
    active: true,
    wrapper: function runNoted(this: PostgresJsQuery, ...args: unknown[]) {
      if (!layer.active) return original.apply(this, args);
      const outer = running;
      running = this;
      try {
        return original.apply(this, args);
      } finally {
        running = outer;
      }
    },
  };
  Object.defineProperty(target, LAYER, { value: layer, configurable: true });
  target.run = layer.wrapper;
  return true;
}

/**
 * Switches the layer off, and takes it out when it is still on top (another tool may have
 * wrapped `run` since, and calls through to it).
 */
export function hideRunningQuery(prototype: object | undefined): void {
  const target = prototype as LayeredPrototype | undefined;
  const layer = target?.[LAYER];
  if (target === undefined || layer === undefined) return;
  layer.active = false;
  if (target.run !== layer.wrapper) return;
  target.run = layer.original;
  delete target[LAYER];
}

/**
 * Counts the rows of every batch a cursor hands to its callback. postgres.js reassigns
 * `cursorFn` for each batch of an async-iterated cursor, so the property itself is intercepted
 * on this query: whatever function is assigned is called through the counter.
 */
export function countCursorBatches(query: PostgresJsQuery, onBatch: (rows: number) => void): void {
  const descriptor = Object.getOwnPropertyDescriptor(query, 'cursorFn');
  if (descriptor !== undefined && (descriptor.configurable !== true || descriptor.get !== undefined)) return;
  const counted = (fn: unknown) =>
    typeof fn !== 'function'
      ? fn
      : function countBatch(this: unknown, batch: unknown, ...rest: unknown[]) {
          try {
            if (Array.isArray(batch)) onBatch(batch.length);
          } catch {
            // Counting never gets in the way of the app's own callback.
          }
          return (fn as (...args: unknown[]) => unknown).call(this, batch, ...rest);
        };
  let current = counted(query.cursorFn);
  Object.defineProperty(query, 'cursorFn', {
    configurable: true,
    enumerable: descriptor?.enumerable ?? true,
    get: () => current,
    set: (fn: unknown) => {
      current = counted(fn);
    },
  });
}

/** The statement texts of a batch query (`sql.batch([...])`), or undefined when it is not one. */
export function batchTexts(query: PostgresJsQuery): string[] | undefined {
  if (!Array.isArray(query.parts)) return undefined;
  const texts: string[] = [];
  for (const part of query.parts as PostgresJsQuery[]) {
    try {
      const text = part?.text;
      if (typeof text === 'string' && text.length > 0) texts.push(text);
    } catch {
      // An unbuildable part fails the batch in postgres.js too; its text is simply unknown.
    }
  }
  return texts;
}
