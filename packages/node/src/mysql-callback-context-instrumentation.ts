/**
 * Runs each mysql2 command's callback and events in the async context of the code that issued
 * the command.
 *
 * A mysql2 connection queues commands and runs them as the server's packets arrive, from the
 * socket's 'data' event: in the async context the connection was created in, which for a pooled
 * connection is whichever request happened to open it. A command's callback (and its 'result',
 * 'end', 'error' events) runs there, so a query made from a query's callback is attributed to
 * the request that opened the connection, or to a request instead of to background work.
 * instrumentation-mysql2 parents the query's own span correctly but does not bind the callback.
 * Binding every command's callback and events when it is queued, to the context active then,
 * fixes query, execute, prepare and the rest alike, on pooled and plain connections.
 */
import { context, type Context } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';
import { describeError, reportProblem } from './diagnostics';
import { installLayer, removeLayer, type AnyFunction } from './prototype-layer';

const LAYER_NAME = 'mysql2-callback-context';
const BOUND = Symbol('request-budget.mysql2-command-context');

/** mysql2 versions whose connection queue this was checked against (3.24). */
const SUPPORTED_VERSIONS = ['>=2 <4'];

interface Command {
  onResult?: AnyFunction;
  emit?: AnyFunction;
  [BOUND]?: true;
}

export class MysqlCallbackContextInstrumentation extends InstrumentationBase<InstrumentationConfig> {
  private reported = false;

  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/mysql2-callback-context', '0.1.0', config);
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition('mysql2', SUPPORTED_VERSIONS, undefined, undefined, [
        new InstrumentationNodeModuleFile(
          'mysql2/lib/connection.js',
          SUPPORTED_VERSIONS,
          (Connection: { prototype?: object }) => {
            this.patch(Connection);
            return Connection;
          },
          (Connection?: { prototype?: object }) => removeLayer(ownerOf(Connection?.prototype, 'addCommand'), 'addCommand', LAYER_NAME),
        ),
      ]),
    ];
  }

  private patch(Connection: { prototype?: object }): void {
    // addCommand lives on mysql2's base connection class (>= 3.11) or on Connection itself.
    const owner = ownerOf(Connection?.prototype, 'addCommand');
    const instrumentation = this;
    const installed = installLayer(
      owner,
      'addCommand',
      LAYER_NAME,
      (original, state) =>
        function addCommandInCallerContext(this: unknown, command: Command) {
          if (state.active) instrumentation.bindToActiveContext(command);
          return original.call(this, command);
        },
    );
    if (!installed) this.reportOnce('mysql2 connections have no addCommand method in this version');
  }

  private bindToActiveContext(command: Command): void {
    try {
      if (command === null || typeof command !== 'object' || command[BOUND] === true) return;
      Object.defineProperty(command, BOUND, { value: true });
      const active = context.active();
      if (typeof command.onResult === 'function') command.onResult = context.bind(active, command.onResult);
      if (typeof command.emit === 'function') command.emit = emitIn(active, command.emit);
    } catch (error) {
      this.reportOnce(describeError(error));
    }
  }

  private reportOnce(why: string): void {
    if (this.reported) return;
    this.reported = true;
    reportProblem(
      `mysql2 callbacks are not bound to the request that made the query (${why}): a query made from another query's callback may be attributed to the wrong request (reported once)`,
    );
  }
}

/** `emit` that calls the listeners in `active`, wherever the event comes from. */
function emitIn(active: Context, emit: AnyFunction): AnyFunction {
  return function emitInCallerContext(this: unknown, ...args: unknown[]) {
    return context.with(active, emit, this, ...args);
  };
}

/** The object in `prototype`'s chain that holds `method` itself. */
export function ownerOf(prototype: object | undefined, method: string): object | undefined {
  for (let p = prototype; p !== undefined && p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | undefined) {
    if (Object.prototype.hasOwnProperty.call(p, method)) return p;
  }
  return undefined;
}
