/**
 * BullMQ jobs with zero code: every job a Worker processes runs in a job root of its own
 * (`runAsJob`), named `<queue>.<job name>` for the `jobs` rules, so its queries, DB time, rows,
 * repeats, heap and outgoing calls are its cost — not the cost of the request that enqueued it,
 * nor of a job running beside it (a Worker with concurrency > 1 runs several at once).
 *
 * Only the processor's own work is in the root: the root wraps `Worker.prototype.callProcessJob`,
 * the call of the processor alone. BullMQ's bookkeeping (the Redis scripts that fetch a job, lock
 * it, extend the lock, complete or fail it) runs in the Worker's main loop and lock timers,
 * outside any root.
 *
 * BullMQ's connection setup (the connection, its handshake, the Redis version check, the queue's
 * metadata) runs outside any root too, even when a Queue is first created inside a request.
 *
 * On the enqueuing side, `Queue.add`/`addBulk` and `FlowProducer.add`/`addBulk` run in a PRODUCER
 * span (`messaging.system` = `bullmq`): the request or job they run under counts the jobs as
 * `cost.jobs.enqueued`, and BullMQ's Redis script that stores them is its own work, not the
 * request's queries. Unless the queue runs BullMQ's own telemetry (which does the same), the
 * enqueuing trace context is stored with each job where BullMQ's telemetry keeps it
 * (`opts.telemetry.metadata`), so the job's span joins the trace that enqueued it.
 *
 * Sandboxed processors (a file given to `new Worker`) run in child processes that BullMQ forks
 * with the parent's `execArgv`, so `--require @request-budget/node/register` starts request-budget
 * there too: the job's root is opened in the child, around the processor's call
 * (`ChildProcessor`), and none in the parent. When the children cannot be running request-budget
 * (it was started with start(), or `workerForkOptions.execArgv` replaces the parent's), their jobs
 * get no cost record, and that is reported once.
 */
import { context, ROOT_CONTEXT, type Span } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';
import { describeError, reportProblem } from '../diagnostics';
import { installLayer, removeLayer, type AnyFunction } from '../prototype-layer';
import { stringAttribute } from '../string-attribute';
import { BULLMQ_SYSTEM, bullMqJobAttributes, bullMqJobName, bullMqParentContext, bullMqPropagationMetadata, type BullMqJobLike } from './bullmq-job';
import { MESSAGING_MESSAGE_ID, runEnqueue } from './enqueue-span';
import { runAsJob, type JobRootOptions } from './job-root';

export interface BullMqInstrumentationConfig extends InstrumentationConfig {
  /**
   * Store the enqueuing trace context with each job (`opts.telemetry.metadata`, as BullMQ's own
   * telemetry does) so the job's span is a child of the enqueue in the same trace. Queues that run
   * BullMQ's telemetry propagate it themselves and are left alone.
   * @default true
   */
  propagateContext?: boolean;
}

/** BullMQ majors whose Worker, Queue and FlowProducer this was checked against. */
export const BULLMQ_SUPPORTED_VERSIONS = ['>=6.0.0 <7'];
const LAYER = 'request-budget-bullmq';
/** Deepest flow tree walked to count (and propagate into) its jobs. */
const MAX_FLOW_DEPTH = 64;

type JobOptions = { telemetry?: { metadata?: unknown; omitContext?: unknown } } & Record<string, unknown>;
interface BulkJob {
  name?: unknown;
  data?: unknown;
  opts?: JobOptions;
}
interface FlowNode {
  name?: unknown;
  queueName?: unknown;
  opts?: JobOptions;
  children?: FlowNode[];
}
/** What a Worker, Queue or FlowProducer instance offers that is read here. */
interface QueueLike {
  readonly name?: unknown;
  readonly opts?: {
    readonly telemetry?: unknown;
    readonly useWorkerThreads?: unknown;
    readonly workerForkOptions?: { readonly execArgv?: unknown; readonly env?: unknown };
    readonly workerThreadsOptions?: { readonly execArgv?: unknown; readonly env?: unknown };
  };
  /** Set on a Worker whose processor is a file run in child processes. */
  readonly childPool?: unknown;
  /** FlowProducer: its own telemetry option. */
  readonly telemetry?: unknown;
}
interface ClassExport {
  prototype?: object;
}
/** A sandboxed processor's child side (bullmq/dist/cjs/classes/child-processor.js). */
interface ChildProcessorLike {
  processor?: unknown;
}
interface ChildProcessorModule {
  ChildProcessor?: ClassExport;
}
/** The root a job is to run in: its name and how the span starts. */
interface JobRootPlan {
  readonly name: string;
  readonly options: JobRootOptions;
}
/** What a sandboxed processor is handed: the job's JSON with the queue's name. */
type SandboxedJob = BullMqJobLike & { readonly queueName?: unknown };
interface BullMqExports {
  Worker?: ClassExport;
  Queue?: ClassExport;
  FlowProducer?: ClassExport;
  RedisConnection?: ClassExport;
  RedisQueueBackend?: ClassExport;
}

export class BullMqInstrumentation extends InstrumentationBase<BullMqInstrumentationConfig> {
  declare private reported: Set<string> | undefined;

  constructor(config: BullMqInstrumentationConfig = {}) {
    super('@request-budget/instrumentation-bullmq', '0.1.0', config);
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition(
        'bullmq',
        BULLMQ_SUPPORTED_VERSIONS,
        (exports: BullMqExports) => this.patch(exports),
        (exports?: BullMqExports) => this.unpatch(exports),
        [
          // Loaded by itself in a sandboxed processor's child process (through classes/main.js).
          new InstrumentationNodeModuleFile(
            'bullmq/dist/cjs/classes/child-processor.js',
            BULLMQ_SUPPORTED_VERSIONS,
            (exports: ChildProcessorModule) => this.patchChild(exports),
            (exports?: ChildProcessorModule) => removeLayer(exports?.ChildProcessor?.prototype, 'init', LAYER),
          ),
        ],
      ),
    ];
  }

  /** In the child: once `init(processorFile)` has loaded the processor, runs each call in a job root. */
  private patchChild(exports: ChildProcessorModule): ChildProcessorModule {
    const instrumentation = this;
    const patched = this.wrap(exports?.ChildProcessor, 'init', (original) => {
      return async function initWithJobRoots(this: ChildProcessorLike, ...args: unknown[]) {
        const result: unknown = await original.apply(this, args);
        try {
          const processor = this.processor;
          if (typeof processor === 'function') this.processor = instrumentation.processorAsJob(processor as AnyFunction);
        } catch (error) {
          instrumentation.reportOnce('child', `a BullMQ sandboxed processor runs without cost records (reported once): ${describeError(error)}`);
        }
        return result;
      };
    });
    if (!patched)
      this.reportOnce(
        'no-child',
        "BullMQ's ChildProcessor has no init method in this version: sandboxed processors' jobs get no cost record (supported: bullmq 6)",
      );
    return exports;
  }

  /** A sandboxed processor `(job, token, signal)`, each call in the job's root. */
  private processorAsJob(processor: AnyFunction): AnyFunction {
    const instrumentation = this;
    return function sandboxedProcessorAsJob(this: unknown, ...args: unknown[]) {
      const job = args[0] as SandboxedJob | undefined;
      let root: JobRootPlan | undefined;
      try {
        if (job !== undefined && job !== null && typeof job.queueName === 'string') root = instrumentation.rootOptions(job.queueName, job);
      } catch (error) {
        instrumentation.reportOnce('job', `a BullMQ job ran without a cost record (reported once): ${describeError(error)}`);
      }
      if (root === undefined) return processor.apply(this, args);
      return runAsJob(root.name, () => processor.apply(this, args), root.options);
    };
  }

  private patch(exports: BullMqExports): BullMqExports {
    try {
      const patched = [
        this.wrap(exports?.Worker, 'callProcessJob', (original) => this.processAsJob(original)),
        this.wrap(exports?.Queue, 'add', (original) => this.enqueue(original, 'add', (queue, args) => this.queueAdd(queue, args))),
        this.wrap(exports?.Queue, 'addBulk', (original) => this.enqueue(original, 'addBulk', (queue, args) => this.queueAddBulk(queue, args))),
        this.wrap(exports?.FlowProducer, 'add', (original) => this.enqueue(original, 'addFlow', (producer, args) => this.flowAdd(producer, args, false))),
        this.wrap(exports?.FlowProducer, 'addBulk', (original) =>
          this.enqueue(original, 'addBulkFlows', (producer, args) => this.flowAdd(producer, args, true)),
        ),
        // Connection setup and queue metadata: BullMQ's, whoever created the Queue or Worker.
        this.wrap(exports?.RedisConnection, 'init', outsideAnyRoot),
        this.wrap(exports?.RedisQueueBackend, 'setQueueMeta', outsideAnyRoot),
      ];
      if (!patched[0]) {
        this.reportOnce('no-worker', "BullMQ's Worker has no callProcessJob method in this version: its jobs get no cost record (supported: bullmq 6)");
      }
    } catch (error) {
      this.reportOnce('patch', `could not patch BullMQ (${describeError(error)}): its jobs get no cost record`);
    }
    return exports;
  }

  private unpatch(exports: BullMqExports | undefined): void {
    removeLayer(exports?.Worker?.prototype, 'callProcessJob', LAYER);
    removeLayer(exports?.RedisConnection?.prototype, 'init', LAYER);
    removeLayer(exports?.RedisQueueBackend?.prototype, 'setQueueMeta', LAYER);
    for (const method of ['add', 'addBulk']) {
      removeLayer(exports?.Queue?.prototype, method, LAYER);
      removeLayer(exports?.FlowProducer?.prototype, method, LAYER);
    }
  }

  private wrap(target: ClassExport | undefined, method: string, wrapper: (original: AnyFunction) => AnyFunction): boolean {
    return installLayer(target?.prototype, method, LAYER, (original, state) => {
      const wrapped = wrapper(original);
      return function bullMqLayer(this: unknown, ...args: unknown[]) {
        return state.active ? wrapped.apply(this, args) : original.apply(this, args);
      };
    });
  }

  /** `callProcessJob(job, token, signal)`: the processor's call, in the job's root. */
  private processAsJob(original: AnyFunction): AnyFunction {
    const instrumentation = this;
    return function callProcessJobAsJob(this: QueueLike, ...args: unknown[]) {
      let root: JobRootPlan | undefined;
      try {
        root = instrumentation.jobRoot(this, args[0] as BullMqJobLike | undefined);
      } catch (error) {
        instrumentation.reportOnce('job', `a BullMQ job ran without a cost record (reported once): ${describeError(error)}`);
      }
      if (root === undefined) return original.apply(this, args);
      return runAsJob(root.name, () => original.apply(this, args), root.options);
    };
  }

  private jobRoot(worker: QueueLike, job: BullMqJobLike | undefined): JobRootPlan | undefined {
    if (job === undefined || job === null || typeof worker.name !== 'string') return undefined;
    // A sandboxed processor runs in a child: its root is opened there (see patchChild).
    if (worker.childPool !== undefined && worker.childPool !== null) {
      if (!childrenRunRequestBudget(worker)) {
        this.reportOnce(
          'sandboxed',
          `BullMQ worker "${worker.name}" runs a sandboxed processor (a file, in child processes) that do not start request-budget, so its jobs get no cost record; fix: start the app with node --require @request-budget/node/register (the children inherit it; keep it in workerForkOptions.execArgv if you set that), or pass the processor function to new Worker()`,
        );
      }
      return undefined;
    }
    return this.rootOptions(worker.name, job);
  }

  private rootOptions(queue: string, job: BullMqJobLike): JobRootPlan {
    return {
      name: bullMqJobName(queue, job),
      options: { attributes: bullMqJobAttributes(queue, job), parentContext: bullMqParentContext(job, context.active()) },
    };
  }

  /** An enqueue method, run in a PRODUCER span described by `describe`. */
  private enqueue(original: AnyFunction, operation: string, describe: (target: QueueLike, args: unknown[]) => EnqueueCall): AnyFunction {
    const instrumentation = this;
    return function enqueueInSpan(this: QueueLike, ...args: unknown[]) {
      let call: EnqueueCall;
      try {
        call = describe(this, args);
      } catch (error) {
        instrumentation.reportOnce(`enqueue-${operation}`, `a BullMQ ${operation} was not counted as enqueued (reported once): ${describeError(error)}`);
        return original.apply(this, args);
      }
      return runEnqueue(
        instrumentation.tracer,
        { system: BULLMQ_SYSTEM, operation, destination: call.destination, batchSize: call.batchSize, attributes: call.attributes },
        () => original.apply(this, argumentsOrAsGiven(call, args, instrumentation)),
        call.describeResult,
      );
    };
  }

  /** Queue.add(name, data, opts). */
  private queueAdd(queue: QueueLike, args: unknown[]): EnqueueCall {
    const propagate = this.propagates(queue.opts?.telemetry);
    return {
      destination: stringOr(queue.name),
      attributes: { 'bullmq.job.name': stringOr(args[0]) ?? '' },
      argumentsIn: (ctx) => (propagate ? [args[0], args[1], withMetadata(args[2], ctx), ...args.slice(3)] : args),
      describeResult: (span, job) => {
        const id = stringAttribute((job as { id?: unknown } | undefined)?.id);
        if (id !== undefined) span.setAttribute(MESSAGING_MESSAGE_ID, id);
      },
    };
  }

  /** Queue.addBulk([{ name, data, opts }]). */
  private queueAddBulk(queue: QueueLike, args: unknown[]): EnqueueCall {
    const jobs = args[0];
    if (!Array.isArray(jobs)) throw new Error('addBulk was not given an array');
    const propagate = this.propagates(queue.opts?.telemetry);
    return {
      destination: stringOr(queue.name),
      batchSize: jobs.length,
      argumentsIn: (ctx) =>
        propagate ? [jobs.map((job: BulkJob) => (isObject(job) ? { ...job, opts: withMetadata(job.opts, ctx) } : job)), ...args.slice(1)] : args,
    };
  }

  /** FlowProducer.add(flow, opts) or addBulk(flows): every job of the tree is enqueued. */
  private flowAdd(producer: QueueLike, args: unknown[], bulk: boolean): EnqueueCall {
    const flows = (bulk ? args[0] : [args[0]]) as FlowNode[];
    if (!Array.isArray(flows)) throw new Error('addBulk was not given an array');
    const propagate = this.propagates(producer.telemetry);
    return {
      destination: stringOr(flows[0]?.queueName),
      batchSize: flows.reduce((sum, flow) => sum + countFlowJobs(flow, 0), 0),
      argumentsIn: (ctx) => {
        if (!propagate) return args;
        const copied = flows.map((flow) => withFlowMetadata(flow, ctx, 0));
        return [bulk ? copied : copied[0], ...args.slice(1)];
      },
    };
  }

  /** Whether this instrumentation stores the trace context with the jobs of a queue. */
  private propagates(bullMqTelemetry: unknown): boolean {
    return this.getConfig().propagateContext !== false && (bullMqTelemetry === undefined || bullMqTelemetry === null);
  }

  /** The trace context could not be stored with a job: it runs, in a trace of its own. */
  reportPropagation(error: unknown): void {
    this.reportOnce(
      'propagate',
      `a BullMQ job was enqueued without the trace context (its job span starts a trace of its own; reported once): ${describeError(error)}`,
    );
  }

  private reportOnce(key: string, message: string): void {
    this.reported ??= new Set();
    if (this.reported.has(key)) return;
    this.reported.add(key);
    reportProblem(message);
  }
}

/** How one enqueue call is described and run. */
interface EnqueueCall {
  readonly destination: string | undefined;
  readonly batchSize?: number;
  readonly attributes?: Record<string, string>;
  /** The call's arguments, with the trace context of `ctx` (the PRODUCER span's) stored in the jobs. */
  readonly argumentsIn: (ctx: ReturnType<typeof context.active>) => unknown[];
  readonly describeResult?: (span: Span, result: unknown) => void;
}

/** request-budget's register module, as it appears in a process's execArgv or NODE_OPTIONS. */
const REGISTER = /@request-budget[\\/]node[\\/](?:dist[\\/])?register\b/;

/**
 * Whether a Worker's sandboxed children start request-budget: BullMQ forks them (or starts worker
 * threads) with the parent's execArgv and environment unless the Worker's options replace them.
 */
function childrenRunRequestBudget(worker: QueueLike): boolean {
  const options = worker.opts?.useWorkerThreads === true ? worker.opts.workerThreadsOptions : worker.opts?.workerForkOptions;
  const execArgv = Array.isArray(options?.execArgv) ? (options.execArgv as unknown[]) : process.execArgv;
  const env = isObject(options?.env) ? (options.env as Record<string, unknown>) : process.env;
  return execArgv.some((arg) => typeof arg === 'string' && REGISTER.test(arg)) || (typeof env.NODE_OPTIONS === 'string' && REGISTER.test(env.NODE_OPTIONS));
}

/** The call's arguments with the trace context stored in its jobs; as given if that fails. */
function argumentsOrAsGiven(call: EnqueueCall, args: unknown[], instrumentation: { reportPropagation(error: unknown): void }): unknown[] {
  try {
    return call.argumentsIn(context.active());
  } catch (error) {
    instrumentation.reportPropagation(error);
    return args;
  }
}

/** Runs a method of BullMQ's own in the empty context: what it sends is charged to no root. */
function outsideAnyRoot(original: AnyFunction): AnyFunction {
  return function inRootContext(this: unknown, ...args: unknown[]) {
    return context.with(ROOT_CONTEXT, () => original.apply(this, args));
  };
}

/** Job options with the trace context added, unless the caller set or refused one. Never mutates. */
function withMetadata(opts: unknown, ctx: ReturnType<typeof context.active>): unknown {
  if (opts !== undefined && !isObject(opts)) return opts;
  const telemetry = opts?.telemetry;
  if (telemetry !== undefined && (!isObject(telemetry) || telemetry.metadata !== undefined || telemetry.omitContext === true)) return opts;
  const metadata = bullMqPropagationMetadata(ctx);
  if (metadata === undefined) return opts;
  return { ...opts, telemetry: { ...telemetry, metadata } };
}

function withFlowMetadata(node: FlowNode, ctx: ReturnType<typeof context.active>, depth: number): FlowNode {
  if (!isObject(node) || depth > MAX_FLOW_DEPTH) return node;
  const copy: FlowNode = { ...node, opts: withMetadata(node.opts, ctx) as JobOptions | undefined };
  if (Array.isArray(node.children)) copy.children = node.children.map((child) => withFlowMetadata(child, ctx, depth + 1));
  return copy;
}

function countFlowJobs(node: FlowNode, depth: number): number {
  if (!isObject(node) || depth > MAX_FLOW_DEPTH) return 0;
  const children = Array.isArray(node.children) ? node.children : [];
  return 1 + children.reduce((sum, child) => sum + countFlowJobs(child, depth + 1), 0);
}

function stringOr(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function isObject(value: unknown): value is Record<string, unknown> & object {
  return typeof value === 'object' && value !== null;
}
