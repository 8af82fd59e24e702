/**
 * pg-boss (PostgreSQL job queue) jobs as roots of their own, with no code in the app.
 *
 * pg-boss 12 traces itself through @opentelemetry/api: a CONSUMER `process <queue>` span around
 * each call of a worker's handler (a root, see cost-span-processor.ts) and a PRODUCER span for
 * each send()/insert() (an enqueue, see core's enqueue-classifier.ts). This instrumentation makes
 * those spans the job's cost record and nothing more:
 *
 * - the `process` span is named as a job after its queue (`request_budget.job.name`, matched by
 *   the `jobs` rules), with the attempt for a batch of one;
 * - only the handler runs in that span. pg-boss's own work inside it (completing or failing the
 *   jobs, heartbeats, the transaction of a transactional worker) runs in a bookkeeping context:
 *   in the same trace, charged to nothing (bookkeeping-context.ts);
 * - work() and start() run outside the caller's span, so the polling loop and maintenance timers
 *   they leave running are never charged to a request that happened to call them;
 * - with pg-boss's telemetry turned off (`openTelemetry: { enabled: false }`), or a pg-boss
 *   without it, each handler call opens a job root of its own instead, and (telemetry off) each
 *   send gets a PRODUCER span of request-budget's.
 *
 * One root per handler call: a batch (`batchSize` above 1) is one root for all its jobs, named
 * after the queue, with `messaging.batch.message_count`; a handler over one job at a time gets
 * one root per job.
 *
 * pg-boss is an ES module. Under `--import` the hooks see its files; under `--require` (an app
 * that require()s it, Node 22.12+) only its entry point, so the telemetry module is found from
 * there, through the module cache.
 */
import { context, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';
import { JOB_ATTEMPT_ATTRIBUTE, JOB_NAME_ATTRIBUTE, MESSAGING_BATCH_MESSAGE_COUNT, MESSAGING_SYSTEM, ROOT_MARKER_ATTRIBUTE } from '@request-budget/core';
import { dirname, join } from 'node:path';
import { describeError, reportProblem } from '../diagnostics';
import { installLayer, removeLayer, type AnyFunction, type LayerState } from '../prototype-layer';
import { bookkeepingContext, outsideAnySpan } from './bookkeeping-context';
import { MESSAGING_DESTINATION_NAME, MESSAGING_MESSAGE_ID, MESSAGING_OPERATION_NAME, MESSAGING_OPERATION_TYPE, runEnqueue } from './enqueue-span';
import { runAsJob } from './job-root';

/** pg-boss versions whose work() handler takes an array of jobs. */
export const PG_BOSS_VERSIONS = ['>=10 <13'];
/** `messaging.system` of pg-boss's spans (its own, and request-budget's). */
export const PG_BOSS_SYSTEM = 'pg-boss';

const LAYER_NAME = 'request-budget.pg-boss';
const TELEMETRY_FILE = 'telemetry.js';
/** The job span pg-boss's `process` span is, carried through the bookkeeping context to the handler. */
const JOB_SPAN = Symbol('request-budget.pg-boss.job-span');

// Process-wide, for unpatched-pg-boss-check.ts: an instrumentation is on, and pg-boss was patched.
const pgBossState = { enabled: false, patched: false };

/** Whether a pg-boss instrumentation is enabled in this process, and whether it patched pg-boss. */
export function pgBossInstrumentationState(): Readonly<typeof pgBossState> {
  return pgBossState;
}

/** The fields of a pg-boss job read here. */
interface JobLike {
  readonly id?: unknown;
  readonly retryCount?: unknown;
}

interface TelemetryInstance {
  readonly enabled?: unknown;
}

interface PgBossModule {
  readonly PgBoss?: { prototype?: object };
  readonly default?: { prototype?: object };
}

interface TelemetryModule {
  readonly default?: { prototype?: object };
}

export class PgBossInstrumentation extends InstrumentationBase<InstrumentationConfig> {
  declare private reported: Set<string> | undefined;

  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/instrumentation-pg-boss', '0.1.0', config);
  }

  override enable(): void {
    super.enable();
    pgBossState.enabled = true;
  }

  protected init() {
    // Seen by the ES module hook (--import) only; under --require, found from the entry point.
    const telemetry = new InstrumentationNodeModuleFile(
      `pg-boss/dist/${TELEMETRY_FILE}`,
      PG_BOSS_VERSIONS,
      (exports: TelemetryModule) => this.patchTelemetry(exports),
      (exports?: TelemetryModule) => this.unpatchTelemetry(exports),
    );
    return [
      new InstrumentationNodeModuleDefinition(
        'pg-boss',
        PG_BOSS_VERSIONS,
        (exports: PgBossModule) => this.patchEntry(exports),
        (exports?: PgBossModule) => this.unpatchEntry(exports),
        [telemetry],
      ),
    ];
  }

  private patchEntry(exports: PgBossModule): PgBossModule {
    this.guard('patch', () => {
      const prototype = pgBossPrototype(exports);
      if (prototype === undefined) throw new Error('it exports no PgBoss class');
      installLayer(prototype, 'work', LAYER_NAME, (original, layer) => this.workAsJobs(original, layer));
      installLayer(prototype, 'start', LAYER_NAME, (original, layer) => runOutsideCaller(original, layer));
      pgBossState.patched = true;
      const telemetry = telemetryBeside(exports);
      if (telemetry !== undefined) this.patchTelemetry(telemetry);
    });
    return exports;
  }

  private unpatchEntry(exports: PgBossModule | undefined): void {
    this.guard('unpatch', () => {
      const prototype = pgBossPrototype(exports);
      removeLayer(prototype, 'work', LAYER_NAME);
      removeLayer(prototype, 'start', LAYER_NAME);
      const telemetry = exports === undefined ? undefined : telemetryBeside(exports);
      if (telemetry !== undefined) this.unpatchTelemetry(telemetry);
    });
  }

  private patchTelemetry(exports: TelemetryModule): TelemetryModule {
    this.guard('patch', () => {
      const prototype = exports?.default?.prototype;
      installLayer(prototype, 'process', LAYER_NAME, (original, layer) => processOutsideTheJob(original, layer));
      installLayer(prototype, 'send', LAYER_NAME, (original, layer) => this.sendWhenUntraced(original, layer));
    });
    return exports;
  }

  private unpatchTelemetry(exports: TelemetryModule | undefined): void {
    this.guard('unpatch', () => {
      removeLayer(exports?.default?.prototype, 'process', LAYER_NAME);
      removeLayer(exports?.default?.prototype, 'send', LAYER_NAME);
    });
  }

  /**
   * `boss.work(name, [options,] handler)`: the worker loop runs outside the caller's span, and
   * the handler runs in its job's span.
   */
  private workAsJobs(original: AnyFunction, state: LayerState): AnyFunction {
    const instrumentation = this;
    return function work(this: unknown, ...args: unknown[]) {
      const at = args.length - 1;
      if (!state.active || typeof args[0] !== 'string' || typeof args[at] !== 'function') return original.apply(this, args);
      args[at] = instrumentation.handlerAsJob(args[0], args[at] as AnyFunction);
      return context.with(outsideAnySpan(context.active()).deleteValue(JOB_SPAN), () => original.apply(this, args));
    };
  }

  private handlerAsJob(queue: string, handler: AnyFunction): AnyFunction {
    const instrumentation = this;
    return function handleAsJob(this: unknown, jobs: unknown, ...rest: unknown[]) {
      const active = context.active();
      const jobSpan = active.getValue(JOB_SPAN) as Span | undefined;
      // pg-boss's process span, its bookkeeping set aside by processOutsideTheJob.
      if (jobSpan !== undefined) return context.with(trace.setSpan(active.deleteValue(JOB_SPAN), jobSpan), () => handler.call(this, jobs, ...rest));
      const processSpan = trace.getSpan(active);
      if (isPgBossProcessSpan(processSpan)) {
        // Its telemetry module could not be patched: the job is named, its bookkeeping is charged.
        instrumentation.reportOnce(
          'unpatched',
          "pg-boss's telemetry could not be patched, so each job's record also counts pg-boss's own completion queries; fix: start the app with `--import @request-budget/node/register`",
        );
        nameJob(processSpan!, queue, jobs);
        return handler.call(this, jobs, ...rest);
      }
      // No span from pg-boss (its telemetry is off, or it has none): a job root of our own.
      return runAsJob(queue, () => handler.call(this, jobs, ...rest), { attributes: processAttributes(queue, jobs) });
    };
  }

  /** Telemetry#send with pg-boss's telemetry off: the enqueue still gets its PRODUCER span. */
  private sendWhenUntraced(original: AnyFunction, state: LayerState): AnyFunction {
    return function send(this: TelemetryInstance, operation: unknown, destination: unknown, attempted: unknown, ...rest: unknown[]) {
      if (!state.active || this?.enabled !== false || typeof operation !== 'string') return original.call(this, operation, destination, attempted, ...rest);
      const tracer = trace.getTracer('@request-budget/instrumentation-pg-boss');
      const batchSize = typeof attempted === 'number' && attempted > 1 ? attempted : undefined;
      return runEnqueue(tracer, { system: PG_BOSS_SYSTEM, operation, destination: typeof destination === 'string' ? destination : undefined, batchSize }, () =>
        original.call(this, operation, destination, attempted, ...rest),
      );
    };
  }

  private guard(key: string, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.reportOnce(key, `could not ${key} pg-boss (${describeError(error)}): its jobs may get no cost record of their own`);
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
 * Telemetry#process(queue, jobs, carrierOf, fn): pg-boss's span is opened as before; `fn` (the
 * handler and pg-boss's bookkeeping around it) runs in a bookkeeping context that carries the
 * span for the handler to take back.
 */
function processOutsideTheJob(original: AnyFunction, state: LayerState): AnyFunction {
  return function process(this: TelemetryInstance, queue: unknown, jobs: unknown, carrierOf: unknown, fn: unknown, ...rest: unknown[]) {
    if (!state.active || this?.enabled === false || typeof fn !== 'function') return original.call(this, queue, jobs, carrierOf, fn, ...rest);
    const processJobs = fn as AnyFunction;
    return original.call(
      this,
      queue,
      jobs,
      carrierOf,
      function processJobsAsBookkeeping(this: unknown, ...args: unknown[]) {
        let inner: Context | undefined;
        try {
          const active = context.active();
          const span = trace.getSpan(active);
          if (span !== undefined) {
            nameJob(span, typeof queue === 'string' ? queue : String(queue), jobs);
            inner = bookkeepingContext(active).setValue(JOB_SPAN, span);
          }
        } catch {
          inner = undefined; // the batch runs as pg-boss runs it
        }
        return inner === undefined ? processJobs.apply(this, args) : context.with(inner, () => processJobs.apply(this, args));
      },
      ...rest,
    );
  };
}

/** A pg-boss method whose lasting work (timers, loops) must not belong to the caller's span. */
function runOutsideCaller(original: AnyFunction, state: LayerState): AnyFunction {
  return function outsideCaller(this: unknown, ...args: unknown[]) {
    if (!state.active) return original.apply(this, args);
    return context.with(outsideAnySpan(context.active()), () => original.apply(this, args));
  };
}

function nameJob(span: Span, queue: string, jobs: unknown): void {
  span.setAttribute(ROOT_MARKER_ATTRIBUTE, true);
  span.setAttribute(JOB_NAME_ATTRIBUTE, queue);
  const attempt = attemptOf(jobs);
  if (attempt !== undefined) span.setAttribute(JOB_ATTEMPT_ATTRIBUTE, attempt);
}

/** The attributes of a job root request-budget opens itself, as pg-boss's span would have them. */
function processAttributes(queue: string, jobs: unknown): Attributes {
  const attributes: Attributes = {
    [MESSAGING_SYSTEM]: PG_BOSS_SYSTEM,
    [MESSAGING_OPERATION_TYPE]: 'process',
    [MESSAGING_OPERATION_NAME]: 'process',
    [MESSAGING_DESTINATION_NAME]: queue,
  };
  const list = Array.isArray(jobs) ? (jobs as JobLike[]) : [];
  if (list.length === 1 && (typeof list[0]?.id === 'string' || typeof list[0]?.id === 'number')) attributes[MESSAGING_MESSAGE_ID] = String(list[0].id);
  if (list.length !== 1) attributes[MESSAGING_BATCH_MESSAGE_COUNT] = list.length;
  const attempt = attemptOf(jobs);
  if (attempt !== undefined) attributes[JOB_ATTEMPT_ATTRIBUTE] = attempt;
  return attributes;
}

/** The attempt (from 1) of a batch of one job; undefined for a batch. */
function attemptOf(jobs: unknown): number | undefined {
  if (!Array.isArray(jobs) || jobs.length !== 1) return undefined;
  const retryCount = (jobs[0] as JobLike | undefined)?.retryCount;
  return typeof retryCount === 'number' && Number.isInteger(retryCount) && retryCount >= 0 ? retryCount + 1 : undefined;
}

function isPgBossProcessSpan(span: Span | undefined): boolean {
  const attributes = (span as { attributes?: Record<string, unknown> } | undefined)?.attributes;
  return attributes?.[MESSAGING_SYSTEM] === PG_BOSS_SYSTEM && attributes[MESSAGING_OPERATION_NAME] === 'process';
}

/** PgBoss.prototype: a named export (12), the default one, or the module itself (CommonJS 10). */
function pgBossPrototype(exports: PgBossModule | undefined): object | undefined {
  if (typeof exports === 'function') return (exports as { prototype?: object }).prototype;
  return (exports?.PgBoss ?? exports?.default)?.prototype;
}

/**
 * pg-boss's telemetry module, beside the entry point the module cache holds for these exports
 * (require() of an ES module shares the ES module's instance); undefined when it is not there.
 */
function telemetryBeside(exports: object): TelemetryModule | undefined {
  const entry = Object.values(require.cache).find((module) => module?.exports === exports);
  if (entry === undefined) return undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a path known only at run time, loaded synchronously inside the patch and from the same module cache as pg-boss's own copy
    return require(join(dirname(entry.filename), TELEMETRY_FILE)) as TelemetryModule;
  } catch {
    return undefined; // a pg-boss without telemetry: each handler call opens its own root
  }
}
