/**
 * Counts the MULTI and EXEC that frame a node-redis transaction, so that a request's
 * `cost.db.queries` is the number of commands the Redis server ran for it, as MONITOR shows them.
 *
 * instrumentation-redis gives each queued command a span, but none to the MULTI and EXEC that
 * node-redis writes around them: a transaction of n commands costs the server n + 2. This adds a
 * `redis-MULTI` and a `redis-EXEC` span per `multi().exec()`. A pipeline (`execAsPipeline`) sends
 * no framing, so it gets none. MULTI is answered at once, within the same write as EXEC, so its
 * span is instantaneous; EXEC's lasts until the transaction's reply.
 *
 * Also in a transaction: a raw `multi().sendCommand([...])` is routed through `addCommand`, which
 * instrumentation-redis traces (otherwise its spans no longer pair with EXEC's replies and none of
 * the transaction's commands is counted); `multi().select()` cannot be, and is reported once.
 */
import { SpanKind, SpanStatusCode, type Attributes, type Span } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';
import { DB_OPERATION_NAME, DB_QUERY_TEXT, DB_SYSTEM_NAME } from '@request-budget/core';
import { describeError, reportProblem } from './diagnostics';
import { installLayer, removeLayer } from './prototype-layer';

interface MultiCommandModule {
  default?: { prototype?: object };
}

const LAYER_NAME = 'redis-transaction';

/** node-redis majors whose client multi-command module this was checked against. */
const SUPPORTED_VERSIONS = ['^5.0.0', '^6.0.0'];

export class RedisTransactionInstrumentation extends InstrumentationBase<InstrumentationConfig> {
  private reported = false;
  private selectReported = false;

  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/redis-transaction', '0.1.0', config);
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition('@redis/client', SUPPORTED_VERSIONS, undefined, undefined, [
        new InstrumentationNodeModuleFile(
          '@redis/client/dist/lib/client/multi-command.js',
          SUPPORTED_VERSIONS,
          (exports: MultiCommandModule) => this.patch(exports),
          (exports?: MultiCommandModule) => this.unpatch(exports),
        ),
      ]),
    ];
  }

  /**
   * Wraps `sendCommand`, `SELECT` and `exec` in place as unmarked layers: instrumentation-redis
   * wraps `exec` with `_wrap`, which would remove a shimmer-marked wrapper (or have this one
   * remove theirs).
   */
  private patch(exports: MultiCommandModule): MultiCommandModule {
    const prototype = exports?.default?.prototype;
    // instrumentation-redis pairs its spans with EXEC's replies one for one, and traces only
    // commands queued through addCommand: a raw sendCommand (same queueing, no span) would leave
    // the transaction's spans unended, its commands uncounted. Route it through addCommand.
    installLayer(prototype, 'sendCommand', LAYER_NAME, (original, state) => {
      return function sendCommandThroughAddCommand(this: { addCommand?: (args: unknown[]) => unknown }, ...args: unknown[]) {
        const [redisArgs] = args;
        if (!state.active || !Array.isArray(redisArgs) || typeof this.addCommand !== 'function') return original.apply(this, args);
        return this.addCommand(redisArgs.slice());
      };
    });
    // SELECT queues its command the same way but also keeps the database: it cannot be rerouted.
    installLayer(prototype, 'SELECT', LAYER_NAME, (original, state) => {
      const instrumentation = this;
      return function selectInTransaction(this: unknown, ...args: unknown[]) {
        if (state.active) instrumentation.reportSelectOnce();
        return original.apply(this, args);
      };
    });
    installLayer(prototype, 'exec', LAYER_NAME, (original, state) => {
      const instrumentation = this;
      return function execWithFraming(this: unknown, ...args: unknown[]) {
        // exec(true) is execAsPipeline(): no MULTI/EXEC on the wire.
        if (!state.active || args[0]) return original.apply(this, args);
        return instrumentation.traceTransaction(() => original.apply(this, args));
      };
    });
    return exports;
  }

  private unpatch(exports: MultiCommandModule | undefined): void {
    for (const method of ['sendCommand', 'SELECT', 'exec']) removeLayer(exports?.default?.prototype, method, LAYER_NAME);
  }

  private reportSelectOnce(): void {
    if (this.selectReported) return;
    this.selectReported = true;
    reportProblem(
      'node-redis: multi().select() puts a SELECT in the transaction that instrumentation-redis does not trace, so the commands of such transactions are not counted (reported once); fix: select the database with the client (createClient({ database }) or the URL), not inside MULTI',
    );
  }

  /** Runs the transaction between a MULTI span and an EXEC span; its result is untouched. */
  private traceTransaction(run: () => unknown): unknown {
    let exec: Span | undefined;
    try {
      this.tracer.startSpan('redis-MULTI', { kind: SpanKind.CLIENT, attributes: framingAttributes('MULTI') }).end();
      exec = this.tracer.startSpan('redis-EXEC', { kind: SpanKind.CLIENT, attributes: framingAttributes('EXEC') });
    } catch (error) {
      this.reportOnce(error);
    }
    let result: unknown;
    try {
      result = run();
    } catch (error) {
      endSpan(exec, error);
      throw error;
    }
    if (exec !== undefined) {
      const span = exec;
      Promise.resolve(result).then(
        () => endSpan(span, undefined),
        (error: unknown) => endSpan(span, error),
      );
    }
    return result;
  }

  private reportOnce(error: unknown): void {
    if (this.reported) return;
    this.reported = true;
    reportProblem(`node-redis transactions: MULTI/EXEC not counted after an error (reported once): ${describeError(error)}`);
  }
}

function framingAttributes(command: 'MULTI' | 'EXEC'): Attributes {
  return { [DB_SYSTEM_NAME]: 'redis', [DB_OPERATION_NAME]: command, [DB_QUERY_TEXT]: command };
}

function endSpan(span: Span | undefined, error: unknown): void {
  if (span === undefined) return;
  if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(error) });
  span.end();
}
