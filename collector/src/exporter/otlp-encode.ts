/**
 * What the collector writes in OTLP: the request it forwards (spans regrouped under the resource
 * and scope they came with), the ExportTraceServiceResponse it answers with, and the
 * google.rpc.Status bodies of its error answers — each in the encoding of the request.
 */
import type { CollectedSpan, ResourceGroup, ScopeGroup, WireSpan } from '../otlp/otlp-model';
import type { OtlpEncoding } from '../receiver/otlp-decode';
import { ExportTraceServiceRequest, ExportTraceServiceResponse, RpcStatus } from '../otlp/otlp-schema';

export const CONTENT_TYPES: Record<OtlpEncoding, string> = { protobuf: 'application/x-protobuf', json: 'application/json' };

/** An ExportTraceServiceRequest holding `spans`, protobuf-encoded. */
export function encodeTraceRequest(spans: readonly CollectedSpan[]): Uint8Array {
  const byResource = new Map<ResourceGroup, Map<ScopeGroup, WireSpan[]>>();
  for (const span of spans) {
    const { origin } = span;
    let byScope = byResource.get(origin.resource);
    if (byScope === undefined) byResource.set(origin.resource, (byScope = new Map()));
    let list = byScope.get(origin);
    if (list === undefined) byScope.set(origin, (list = []));
    list.push(span.wire);
  }
  const request = {
    resourceSpans: [...byResource].map(([resource, byScope]) => ({
      resource: resource.resource,
      // Empty strings are proto3 defaults: left out, as senders leave them out.
      ...(resource.schemaUrl !== '' ? { schemaUrl: resource.schemaUrl } : {}),
      scopeSpans: [...byScope].map(([scope, wires]) => ({
        scope: scope.scope,
        ...(scope.schemaUrl !== '' ? { schemaUrl: scope.schemaUrl } : {}),
        spans: wires,
      })),
    })),
  };
  return ExportTraceServiceRequest.encode(request).finish();
}

export interface PartialSuccess {
  readonly rejectedSpans: number;
  readonly errorMessage: string;
}

/** The success answer: empty, or with `partial_success` when some spans were refused. */
export function encodeExportResponse(encoding: OtlpEncoding, partial?: PartialSuccess): Uint8Array {
  if (encoding === 'json') {
    // proto3 JSON writes int64 as a decimal string.
    const body = partial === undefined ? {} : { partialSuccess: { rejectedSpans: String(partial.rejectedSpans), errorMessage: partial.errorMessage } };
    return Buffer.from(JSON.stringify(body));
  }
  const message = partial === undefined ? {} : { partialSuccess: { rejectedSpans: partial.rejectedSpans, errorMessage: partial.errorMessage } };
  return ExportTraceServiceResponse.encode(message).finish();
}

/** gRPC status codes used in error bodies, by HTTP status. */
const GRPC_CODES: Record<number, number> = {
  400: 3, // INVALID_ARGUMENT
  401: 16, // UNAUTHENTICATED
  404: 5, // NOT_FOUND
  405: 12, // UNIMPLEMENTED
  413: 3, // INVALID_ARGUMENT (the payload, not the server, is at fault)
  415: 3,
  429: 8, // RESOURCE_EXHAUSTED
  500: 13, // INTERNAL
  503: 14, // UNAVAILABLE
};

/** An error answer's body: google.rpc.Status with the gRPC code for `httpStatus` and `message`. */
export function encodeStatus(encoding: OtlpEncoding, httpStatus: number, message: string): Uint8Array {
  const code = GRPC_CODES[httpStatus] ?? 2; // UNKNOWN
  if (encoding === 'json') return Buffer.from(JSON.stringify({ code, message }));
  return RpcStatus.encode({ code, message }).finish();
}
