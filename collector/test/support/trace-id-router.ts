/**
 * A stand-in for the OpenTelemetry Collector's `loadbalancing` exporter with `routing_key: traceID`
 * (otelcol cannot run here): it takes OTLP/gRPC Export calls, splits each batch by trace id —
 * every piece keeps its spans' resource and scope — picks one backend per trace id on a consistent
 * hash ring, merges the pieces bound for the same backend into one request (as the exporter does
 * since it merges per endpoint) and sends them over OTLP/gRPC, each call with a deadline. The
 * sender's call is answered once every backend has answered: OK, or UNAVAILABLE (retryable) if one
 * failed, so a test knows that what it sent has reached the backends' intake.
 */
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { EXPORT_METHOD_PATH, TRACE_SERVICE } from '../../src/receiver/grpc-receiver';
import { ExportTraceServiceRequest, encodeEmptyResponse } from '../../../test/support/otlp-schema';

/** Points per backend on the ring, as many as otelcol's loadbalancing exporter gives each endpoint. */
const VIRTUAL_NODES = 100;

/**
 * Consistent hashing of trace ids onto backends: each backend sits at VIRTUAL_NODES points of a
 * 32-bit ring, and a trace id goes to the first point at or after its own position (wrapping).
 * Adding or removing a backend moves only the trace ids of the arcs it gains or loses.
 *
 * The hash is not otelcol's (it uses CRC-32 modulo 36,000 for points and keys; this uses the first
 * 4 bytes of SHA-256), so the same trace id may land on another instance than under otelcol. What
 * the collectors rely on is only that the choice is a function of the trace id alone (and of the
 * list of backends): every span of a trace, from any sender and in any batch, goes to the same one.
 */
export class TraceIdHashRing {
  private readonly points: readonly { readonly position: number; readonly backend: string }[];

  constructor(backends: readonly string[]) {
    if (backends.length === 0) throw new Error('a hash ring needs at least one backend');
    this.points = backends
      .flatMap((backend) => Array.from({ length: VIRTUAL_NODES }, (_, point) => ({ position: ringPosition(`${backend}#${point}`), backend })))
      .sort((a, b) => a.position - b.position);
  }

  /** The backend of a trace id (lowercase hex, as OTLP/JSON writes it). */
  backendFor(traceIdHex: string): string {
    const position = ringPosition(Buffer.from(traceIdHex, 'hex'));
    let low = 0;
    let high = this.points.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.points[middle]!.position < position) low = middle + 1;
      else high = middle;
    }
    return this.points[low % this.points.length]!.backend;
  }
}

const ringPosition = (key: string | Uint8Array): number => createHash('sha256').update(key).digest().readUInt32BE(0);

/** A client of one OTLP/gRPC TraceService (raw bytes in and out, as the collector's own receiver). */
export interface OtlpGrpcClient {
  /** One Export call with a deadline of `timeoutMs`; rejects with the grpc-js ServiceError. */
  export(message: Uint8Array): Promise<void>;
  close(): void;
}

const raw = (bytes: Buffer): Buffer => bytes;

export function otlpGrpcClient(address: string, timeoutMs = 5000): OtlpGrpcClient {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return {
    export: (message) =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          EXPORT_METHOD_PATH,
          raw,
          raw,
          Buffer.from(message),
          new grpc.Metadata(),
          { deadline: Date.now() + timeoutMs },
          (error: grpc.ServiceError | null) => (error ? reject(error) : resolve()),
        );
      }),
    close: () => client.close(),
  };
}

/** The parts of a decoded ExportTraceServiceRequest the split reads (the official schema's field names). */
interface DecodedRequest {
  readonly resourceSpans: readonly {
    readonly resource?: unknown;
    readonly schemaUrl?: string;
    readonly scopeSpans: readonly { readonly scope?: unknown; readonly schemaUrl?: string; readonly spans: readonly { readonly traceId: Uint8Array }[] }[];
  }[];
}

type ResourceSpans = DecodedRequest['resourceSpans'][number];

/** One trace's spans out of a batch: one ResourceSpans per (resource, scope) they came under. */
export interface TracePiece {
  readonly traceIdHex: string;
  readonly resourceSpans: ResourceSpans[];
  spanCount: number;
}

/** Splits a batch by trace id; spans keep their resource and scope (and schema URLs). */
export function splitByTraceId(request: DecodedRequest): TracePiece[] {
  const pieces = new Map<string, TracePiece>();
  for (const resourceSpans of request.resourceSpans) {
    for (const scopeSpans of resourceSpans.scopeSpans) {
      const byTrace = new Map<string, ResourceSpans['scopeSpans'][number]['spans'][number][]>();
      for (const span of scopeSpans.spans) {
        const traceIdHex = Buffer.from(span.traceId).toString('hex');
        const spans = byTrace.get(traceIdHex);
        if (spans === undefined) byTrace.set(traceIdHex, [span]);
        else spans.push(span);
      }
      for (const [traceIdHex, spans] of byTrace) {
        let piece = pieces.get(traceIdHex);
        if (piece === undefined) pieces.set(traceIdHex, (piece = { traceIdHex, resourceSpans: [], spanCount: 0 }));
        piece.resourceSpans.push({ ...resourceSpans, scopeSpans: [{ ...scopeSpans, spans }] });
        piece.spanCount += spans.length;
      }
    }
  }
  return [...pieces.values()];
}

export interface TraceIdRouter {
  /** `host:port` of its OTLP/gRPC intake. */
  readonly address: string;
  /** The backend every span of this trace id goes to. */
  backendFor(traceIdHex: string): string;
  /** Spans forwarded (answered OK) per backend. */
  readonly forwardedSpans: ReadonlyMap<string, number>;
  /** Forwards that failed (each failed the sender's call). */
  readonly failedForwards: number;
  close(): Promise<void>;
}

/** Starts the router on a free loopback port in front of `backends` (their OTLP/gRPC `host:port`). */
export async function startTraceIdRouter(backends: readonly string[], forwardTimeoutMs = 5000): Promise<TraceIdRouter> {
  const ring = new TraceIdHashRing(backends);
  const clients = new Map(backends.map((backend) => [backend, otlpGrpcClient(backend, forwardTimeoutMs)]));
  const forwardedSpans = new Map(backends.map((backend) => [backend, 0]));
  let failedForwards = 0;

  async function route(message: Buffer): Promise<void> {
    const request = ExportTraceServiceRequest.decode(message) as unknown as DecodedRequest;
    const perBackend = new Map<string, { resourceSpans: ResourceSpans[]; spans: number }>();
    for (const piece of splitByTraceId(request)) {
      const backend = ring.backendFor(piece.traceIdHex);
      const merged = perBackend.get(backend) ?? { resourceSpans: [], spans: 0 };
      merged.resourceSpans.push(...piece.resourceSpans);
      merged.spans += piece.spanCount;
      perBackend.set(backend, merged);
    }
    const outcomes = await Promise.allSettled(
      [...perBackend].map(async ([backend, { resourceSpans, spans }]) => {
        await clients.get(backend)!.export(ExportTraceServiceRequest.encode({ resourceSpans }).finish());
        forwardedSpans.set(backend, forwardedSpans.get(backend)! + spans);
      }),
    );
    const failures = outcomes.filter((outcome) => outcome.status === 'rejected');
    failedForwards += failures.length;
    if (failures.length > 0) throw new Error(`forwarding failed: ${failures.map((failure) => String(failure.reason)).join('; ')}`);
  }

  const server = new grpc.Server();
  server.addService(TRACE_SERVICE, {
    Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      route(call.request).then(
        () => callback(null, Buffer.from(encodeEmptyResponse())),
        (error: Error) => callback({ code: grpc.status.UNAVAILABLE, details: error.message }),
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    address: `127.0.0.1:${port}`,
    backendFor: (traceIdHex) => ring.backendFor(traceIdHex),
    forwardedSpans,
    get failedForwards() {
      return failedForwards;
    },
    async close() {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      for (const client of clients.values()) client.close();
    },
  };
}
