/**
 * What a BullMQ job tells its root span: its name in the `jobs` rules (`<queue>.<job name>`), its
 * messaging attributes, and the trace that enqueued it. The trace context travels in the job's
 * options where BullMQ's own telemetry (bullmq-otel) keeps it, `opts.telemetry.metadata`: a JSON
 * object of propagation headers (`traceparent`, `tracestate`), stored with the job as `tm`.
 */
import { propagation, trace, type Attributes, type Context } from '@opentelemetry/api';
import { JOB_ATTEMPT_ATTRIBUTE, MESSAGING_SYSTEM } from '@request-budget/core';
import { stringAttribute } from '../string-attribute';
import { MESSAGING_DESTINATION_NAME, MESSAGING_MESSAGE_ID, MESSAGING_OPERATION_NAME, MESSAGING_OPERATION_TYPE } from './enqueue-span';

/** `messaging.system` of BullMQ's spans. */
export const BULLMQ_SYSTEM = 'bullmq';
/** Longest propagation metadata read back from a job: a traceparent and a tracestate fit well. */
const MAX_METADATA_CHARS = 8192;

/** The fields of a BullMQ Job (or of a sandboxed processor's job copy) read here. */
export interface BullMqJobLike {
  readonly id?: unknown;
  readonly name?: unknown;
  readonly attemptsStarted?: unknown;
  readonly attemptsMade?: unknown;
  readonly opts?: { readonly telemetry?: { readonly metadata?: unknown; readonly omitContext?: unknown } };
}

/** The job's name in budgets, reports and metrics: `<queue>.<job name>`, e.g. `mail.welcome`. */
export function bullMqJobName(queue: string, job: BullMqJobLike): string {
  return `${queue}.${stringAttribute(job.name) ?? ''}`;
}

/** Messaging attributes of the job's root span, and which attempt it is. */
export function bullMqJobAttributes(queue: string, job: BullMqJobLike): Attributes {
  const attributes: Attributes = {
    [MESSAGING_SYSTEM]: BULLMQ_SYSTEM,
    [MESSAGING_OPERATION_TYPE]: 'process',
    [MESSAGING_OPERATION_NAME]: 'process',
    [MESSAGING_DESTINATION_NAME]: queue,
  };
  const id = stringAttribute(job.id);
  if (id !== undefined) attributes[MESSAGING_MESSAGE_ID] = id;
  const attempt = attemptOf(job);
  if (attempt !== undefined) attributes[JOB_ATTEMPT_ATTRIBUTE] = attempt;
  return attributes;
}

/**
 * The context the job's root starts in. A span already active there (BullMQ's own `process` span
 * under bullmq-otel, or the app's) is kept as the parent: it already continues the enqueuing
 * trace. Otherwise the trace context stored with the job, when there is one; else `active`.
 */
export function bullMqParentContext(job: BullMqJobLike, active: Context): Context {
  if (trace.getSpan(active) !== undefined) return active;
  const metadata = job.opts?.telemetry?.metadata;
  if (typeof metadata !== 'string' || metadata.length === 0 || metadata.length > MAX_METADATA_CHARS) return active;
  let carrier: unknown;
  try {
    carrier = JSON.parse(metadata);
  } catch {
    return active; // not ours to judge: BullMQ's telemetry reads it the same way
  }
  if (typeof carrier !== 'object' || carrier === null || Array.isArray(carrier)) return active;
  return propagation.extract(active, carrier as Record<string, unknown>);
}

/**
 * The trace context of `ctx` as BullMQ's telemetry stores it with a job (a JSON object of
 * propagation headers), or undefined when there is nothing to propagate.
 */
export function bullMqPropagationMetadata(ctx: Context): string | undefined {
  if (trace.getSpan(ctx) === undefined) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return Object.keys(carrier).length === 0 ? undefined : JSON.stringify(carrier);
}

/** BullMQ counts started attempts (stalled restarts included) from 1; older jobs only failed ones. */
function attemptOf(job: BullMqJobLike): number | undefined {
  if (typeof job.attemptsStarted === 'number' && job.attemptsStarted >= 1) return job.attemptsStarted;
  if (typeof job.attemptsMade === 'number' && job.attemptsMade >= 0) return job.attemptsMade + 1;
  return undefined;
}
