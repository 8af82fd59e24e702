/**
 * The collector's OTLP/gRPC side: opentelemetry.proto.collector.trace.v1.TraceService/Export on
 * its own port (4317 by convention), for SDKs whose default is gRPC and otelcol's otlp and
 * loadbalancing exporters. The message stays raw bytes through grpc-js (which also inflates
 * grpc-encoding gzip, within the size limit) and goes through the same decoder and intake as an
 * OTLP/HTTP body. Refusals map to the status codes the OTLP specification names: UNAVAILABLE
 * (retryable, with a RetryInfo of the seconds HTTP gives in Retry-After) when full, out of memory
 * or shutting down; INVALID_ARGUMENT for a message that does not decode; UNAUTHENTICATED for a
 * missing or wrong bearer token.
 */
import * as grpc from '@grpc/grpc-js';
import type { CollectorMetrics } from '../metrics';
import { encodeExportResponse } from '../exporter/otlp-encode';
import { acceptDecoded, bearerCheck, SHUTTING_DOWN_MESSAGE, SHUTTING_DOWN_RETRY_AFTER_SECONDS, type IntakeOptions } from './accept-decoded';
import { retryInfoTrailer } from './grpc-retry-info';
import type { InFlightBytes } from './in-flight-bytes';
import { decodeTraceRequest, OtlpDecodeError } from './otlp-decode';

export const EXPORT_METHOD_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

const raw = (bytes: Buffer): Buffer => bytes;

/** TraceService with the request and response left as bytes: decoding is the collector's own. */
export const TRACE_SERVICE: grpc.ServiceDefinition = {
  Export: {
    path: EXPORT_METHOD_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
};

export interface GrpcReceiverOptions extends Omit<IntakeOptions, 'onAcceptedSpans'> {
  readonly host: string;
  readonly port: number;
  /** The largest message, after inflating (the HTTP body limit); grpc-js answers RESOURCE_EXHAUSTED beyond it. */
  readonly maxMessageBytes: number;
  readonly authToken: string | undefined;
  readonly metrics: CollectorMetrics;
  /** Why requests are refused for memory now, or undefined (memory-gate.ts). */
  memoryRefusal(): string | undefined;
  /** Why a message of `bytes` cannot be held, or undefined when it can (memory-gate.ts). */
  memoryOverrun(bytes: number): string | undefined;
  onMemoryRefused(): void;
  /** The bytes of the requests in flight: a message counts in them until its spans are taken in. */
  readonly inFlight: InFlightBytes;
  reportProblem(message: string): void;
}

export interface GrpcReceiver {
  /** `host:port` it listens on (IPv6 hosts in brackets). */
  readonly address: string;
  readonly port: number;
  /** Stops taking calls; calls under way get until `deadline` (epoch ms), then all are cut. */
  shutdown(deadline: number): Promise<void>;
}

/** A refusal: the status code and its message, and when to retry for a refusal for capacity. */
class GrpcFailure extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

/** A listen address that could not be bound; `code` is the system's (EADDRINUSE…) when known. */
export class GrpcBindError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

export async function startGrpcReceiver(options: GrpcReceiverOptions): Promise<GrpcReceiver> {
  const authorized = bearerCheck(options.authToken);
  const intake: IntakeOptions = { ...options, onAcceptedSpans: (count) => options.metrics.receivedSpans.inc({ encoding: 'grpc' }, count) };

  function receive(call: grpc.ServerUnaryCall<Buffer, Buffer>): Buffer {
    if (options.isShuttingDown()) throw new GrpcFailure(grpc.status.UNAVAILABLE, SHUTTING_DOWN_MESSAGE, SHUTTING_DOWN_RETRY_AFTER_SECONDS);
    const authorization = call.metadata.get('authorization')[0];
    if (!authorized(typeof authorization === 'string' ? authorization : ''))
      throw new GrpcFailure(grpc.status.UNAUTHENTICATED, 'missing or wrong bearer token (authorization: Bearer … metadata)');
    // Checked as for an OTLP/HTTP body: at the soft limit before it comes in, then against the
    // limit itself with its bytes, which count in flight until its spans are taken in.
    const memory = options.memoryRefusal() ?? options.memoryOverrun(call.request.length);
    if (memory !== undefined) {
      options.onMemoryRefused();
      throw new GrpcFailure(grpc.status.UNAVAILABLE, memory, options.capacity().retryAfterSeconds);
    }
    const share = options.inFlight.open();
    share.set(call.request.length);
    try {
      let decoded;
      try {
        decoded = decodeTraceRequest(call.request, 'protobuf');
      } catch (error) {
        if (error instanceof OtlpDecodeError) throw new GrpcFailure(grpc.status.INVALID_ARGUMENT, error.message);
        // A decoder bug or a pathological payload (too deep): still the payload's fault.
        throw new GrpcFailure(grpc.status.INVALID_ARGUMENT, `message could not be decoded: ${(error as Error).message}`);
      }
      const outcome = acceptDecoded(intake, decoded);
      if (outcome.outcome !== 'accepted') throw new GrpcFailure(grpc.status.UNAVAILABLE, outcome.message, outcome.retryAfterSeconds);
      return Buffer.from(encodeExportResponse('protobuf', outcome.partial));
    } finally {
      share.release();
    }
  }

  const server = new grpc.Server({ 'grpc.max_receive_message_length': options.maxMessageBytes });
  server.addService(TRACE_SERVICE, {
    Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      let code = grpc.status.OK;
      try {
        callback(null, receive(call));
      } catch (error) {
        const failure = error instanceof GrpcFailure ? error : new GrpcFailure(grpc.status.INTERNAL, 'internal error');
        if (!(error instanceof GrpcFailure)) {
          options.metrics.internalErrors.inc();
          options.reportProblem(`unexpected error while receiving traces over gRPC: ${(error as Error)?.stack ?? String(error)}`);
        }
        code = failure.code;
        const { retryAfterSeconds } = failure;
        callback({
          code: failure.code,
          details: failure.message,
          ...(retryAfterSeconds === undefined ? {} : { metadata: retryInfoTrailer(failure.code, failure.message, retryAfterSeconds) }),
        });
      }
      options.metrics.receivedRequests.inc({ encoding: 'grpc', code: grpc.status[code] });
    },
  });
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  routeGrpcLog(options.reportProblem);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${options.port}`, grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  ).catch((error: Error) => {
    server.forceShutdown();
    // grpc-js keeps only the messages of the listen errors: "… resolved errors: [listen EADDRINUSE: …]".
    const causes = /errors: \[(.*)\]$/s.exec(error.message)?.[1] ?? error.message;
    throw new GrpcBindError(causes, /\b(E[A-Z]+)\b/.exec(causes)?.[1]);
  });
  return {
    address: `${host}:${port}`,
    port,
    async shutdown(deadline) {
      const stopped = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      const timer = setTimeout(() => server.forceShutdown(), Math.max(0, deadline - Date.now()));
      await stopped;
      clearTimeout(timer);
    },
  };
}

/**
 * grpc-js's own log lines go to the collector's log (one logger per process: the last receiver
 * started). Its line for a failed bind ("No address added out of total 1 resolved") is left out:
 * the bind error is reported with its cause instead.
 */
function routeGrpcLog(log: (message: string) => void): void {
  const forward = (...parts: unknown[]) => {
    const text = parts.map(String).join(' ');
    if (!text.startsWith('No address added out of total')) log(`grpc-js: ${text}`);
  };
  grpc.setLogger({ error: forward, info: forward, debug: forward });
}
