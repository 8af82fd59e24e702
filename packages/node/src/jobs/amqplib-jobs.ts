/**
 * RabbitMQ messages consumed with amqplib, as jobs. instrumentation-amqplib opens a CONSUMER span
 * per message (a root of its own: see cost-span-processor.ts) and ends it when the message is
 * acked, nacked or rejected, or, with `noAck`, as soon as the handler returns. This companion,
 * installed after it, wraps each consumer's handler inside that span, so that:
 *
 * - the span is a job named after the queue consumed from (`request_budget.job.name`, matched by
 *   the `jobs` rules: `orders.*`); a server-named queue (`amq.gen-…`, one per consumer) is
 *   named after the exchange the message came through instead, so names stay few;
 * - a handler that returns a promise keeps its span open until the promise settles, however early
 *   it acks (or with `noAck`): its queries, calls and enqueues are inside its cost record. A
 *   rejection is recorded on the span as an error, and still reaches the process as before.
 *
 * Acks, nacks and rejects make no spans, so they cost the job nothing.
 */
import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  isWrapped,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';
import { JOB_NAME_ATTRIBUTE, MESSAGING_SYSTEM, ROOT_MARKER_ATTRIBUTE } from '@request-budget/core';
import { describeError, reportProblem } from '../diagnostics';
import { installLayer, removeLayer, type AnyFunction, type LayerState } from '../prototype-layer';

/** The amqplib versions instrumentation-amqplib 0.71 patches (its own module definitions). */
export const AMQPLIB_VERSIONS = ['>=0.5.5 <3'];
/** `messaging.system` of RabbitMQ spans, as instrumentation-amqplib reads it from the server. */
export const RABBITMQ_SYSTEM = 'rabbitmq';

const LAYER_NAME = 'request-budget.amqplib-job';
/** The instrumentation scope of instrumentation-amqplib's spans. */
const AMQPLIB_SCOPE = '@opentelemetry/instrumentation-amqplib';
/** Prefix RabbitMQ gives the queues it names itself (`queue: ''` in assertQueue). */
const SERVER_NAMED_QUEUE = 'amq.gen-';

interface ChannelModule {
  Channel?: { prototype?: object };
}

/** A span's end, put off while its message's handler runs. */
interface SpanEndHold {
  release(): void;
  untilSettled(result: PromiseLike<unknown>): PromiseLike<unknown>;
}

/** The fields of a delivered message read here. */
interface DeliveredMessage {
  readonly fields?: { readonly exchange?: unknown; readonly routingKey?: unknown };
}

export class AmqplibJobInstrumentation extends InstrumentationBase<InstrumentationConfig> {
  declare private reported: Set<string> | undefined;

  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/amqplib-jobs', '0.1.0', config);
  }

  protected init() {
    const files = ['amqplib/lib/channel_model.js', 'amqplib/lib/callback_model.js'].map(
      (file) =>
        new InstrumentationNodeModuleFile(
          file,
          AMQPLIB_VERSIONS,
          (exports: ChannelModule) => this.patch(exports),
          (exports?: ChannelModule) => this.unpatch(exports),
        ),
    );
    return [new InstrumentationNodeModuleDefinition('amqplib', AMQPLIB_VERSIONS, undefined, undefined, files)];
  }

  private patch(exports: ChannelModule): ChannelModule {
    try {
      const prototype = exports?.Channel?.prototype as { consume?: unknown } | undefined;
      // Installed before instrumentation-amqplib's wrapper, this one would run outside the
      // message's span: it could neither name it nor keep it open.
      if (prototype !== undefined && typeof prototype.consume === 'function' && !isWrapped(prototype.consume)) {
        this.reportOnce(
          'order',
          "amqplib was patched by request-budget before instrumentation-amqplib, so consumed messages are not named as jobs and a handler returning a promise is not waited for; fix: list the amqplib instrumentation before request-budget's companions (start() does so)",
        );
      }
      installLayer(prototype, 'consume', LAYER_NAME, (original, state) => this.consumeAsJobs(original, state));
    } catch (error) {
      this.reportOnce('patch', `could not patch amqplib (${describeError(error)}): messages it consumes are not named as jobs`);
    }
    return exports;
  }

  private unpatch(exports: ChannelModule | undefined): void {
    try {
      removeLayer(exports?.Channel?.prototype, 'consume', LAYER_NAME);
    } catch (error) {
      this.reportOnce('unpatch', `could not unpatch amqplib: ${describeError(error)}`);
    }
  }

  /** `channel.consume(queue, onMessage, …)` with `onMessage` run as a job of `queue`. */
  private consumeAsJobs(original: AnyFunction, state: LayerState): AnyFunction {
    const instrumentation = this;
    return function consume(this: unknown, queue: unknown, onMessage: unknown, ...rest: unknown[]) {
      if (!state.active || typeof onMessage !== 'function') return original.call(this, queue, onMessage, ...rest);
      const handler = onMessage as AnyFunction;
      const asJob = function consumeMessageAsJob(this: unknown, message: unknown) {
        // null: the server cancelled the consumer; no message, no job.
        if (!state.active || message === null || message === undefined) return handler.call(this, message);
        const span = instrumentation.nameJob(queue, message);
        // Held from before the call: a handler may ack before its first await.
        const hold = span === undefined ? undefined : instrumentation.holdEnd(span);
        let result: unknown;
        try {
          result = handler.call(this, message);
        } catch (error) {
          hold?.release();
          throw error;
        }
        if (hold === undefined) return result;
        if (typeof (result as { then?: unknown } | null | undefined)?.then !== 'function') {
          hold.release();
          return result;
        }
        return hold.untilSettled(result as PromiseLike<unknown>);
      };
      return original.call(this, queue, asJob, ...rest);
    };
  }

  /** Names the message's CONSUMER span as a job; the span, or undefined when it is not recorded. */
  private nameJob(queue: unknown, message: DeliveredMessage): Span | undefined {
    try {
      const span = trace.getSpan(context.active());
      if (span === undefined || !span.isRecording() || (span as { kind?: SpanKind }).kind !== SpanKind.CONSUMER) return undefined;
      // Only instrumentation-amqplib's span for this very delivery (its scope, where readable).
      const scope = (span as { instrumentationScope?: { name?: unknown } }).instrumentationScope?.name;
      if (scope !== undefined && scope !== AMQPLIB_SCOPE) return undefined;
      span.setAttribute(ROOT_MARKER_ATTRIBUTE, true);
      span.setAttribute(JOB_NAME_ATTRIBUTE, amqplibJobName(queue, message));
      return span;
    } catch (error) {
      this.reportOnce('name', `could not name an amqplib message as a job (reported once): ${describeError(error)}`);
      return undefined;
    }
  }

  /**
   * Puts off the span's end (on ack, or at once with noAck) while the handler runs. A handler
   * that returns a promise ends its span when the promise settles, once; any other hands the
   * span back to instrumentation-amqplib (`release`), ending it then if it asked to meanwhile.
   */
  private holdEnd(span: Span): SpanEndHold | undefined {
    try {
      const end = span.end;
      let endAsked = false;
      let ended = false;
      const endNow = () => {
        if (ended) return;
        ended = true;
        end.call(span);
      };
      span.end = () => {
        endAsked = true;
      };
      const release = () => {
        span.end = end;
        if (endAsked) endNow();
      };
      const untilSettled = (result: PromiseLike<unknown>) => {
        // Ends asked for from now on (an ack after the promise settled) find the span ended.
        span.end = () => {};
        // The caller (instrumentation-amqplib) drops the handler's result; a rejection still
        // reaches the process, from the promise returned here.
        return result.then(
          (value) => {
            endNow();
            return value;
          },
          (error: unknown) => {
            try {
              span.recordException(error instanceof Error ? error : String(error));
              span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
            } finally {
              endNow();
            }
            throw error;
          },
        );
      };
      return { release, untilSettled };
    } catch (error) {
      this.reportOnce('hold', `could not keep an amqplib message's span open until its handler settled (reported once): ${describeError(error)}`);
      return undefined;
    }
  }

  private reportOnce(key: string, message: string): void {
    this.reported ??= new Set();
    if (this.reported.has(key)) return;
    this.reported.add(key);
    reportProblem(message);
  }
}

/**
 * The job name of a message consumed from `queue`: the queue's name; for a queue the server
 * named, the exchange the message came through (the routing key, through the default exchange).
 */
export function amqplibJobName(queue: unknown, message: DeliveredMessage): string {
  const name = typeof queue === 'string' ? queue : String(queue);
  if (name.length > 0 && !name.startsWith(SERVER_NAMED_QUEUE)) return name;
  const exchange = message.fields?.exchange;
  if (typeof exchange === 'string' && exchange.length > 0) return exchange;
  const routingKey = message.fields?.routingKey;
  return typeof routingKey === 'string' && routingKey.length > 0 ? routingKey : name;
}

/**
 * instrumentation-amqplib `publishHook`: `messaging.system` on every publish span, which it sets
 * only from the server's product name when it saw the connection open. Without it, a publish is
 * no enqueue (see core's enqueue-classifier.ts).
 */
export function amqplibPublishHook(span: Span): void {
  const attributes = (span as { attributes?: Record<string, unknown> }).attributes;
  if (typeof attributes?.[MESSAGING_SYSTEM] === 'string') return;
  span.setAttribute(MESSAGING_SYSTEM, RABBITMQ_SYSTEM);
}
