/**
 * What the collector writes in OTLP: the request it forwards (spans regrouped under the resource
 * and scope they came with), the ExportTraceServiceResponse it answers with, and the
 * google.rpc.Status bodies of its error answers — each in the encoding of the request.
 */
import type { CollectedSpan, GroupBytes, MessageBytes, ResourceGroup, ScopeGroup } from '../otlp/otlp-model';
import type { OtlpEncoding } from '../receiver/otlp-decode';
import { ExportTraceServiceResponse, RpcStatus } from '../otlp/otlp-schema';
import { varintSize, writeVarint } from '../otlp/varint';

export const CONTENT_TYPES: Record<OtlpEncoding, string> = { protobuf: 'application/x-protobuf', json: 'application/json' };

// Tags (field number << 3 | length-delimited): every field written here is a message or a string.
const RESOURCE_SPANS = 0x0a; // ExportTraceServiceRequest.resource_spans = 1
const RESOURCE = 0x0a; // ResourceSpans.resource = 1
const SCOPE_SPANS = 0x12; // ResourceSpans.scope_spans = 2
const SCHEMA_URL = 0x1a; // ResourceSpans.schema_url = 3, ScopeSpans.schema_url = 3
const SCOPE = 0x0a; // ScopeSpans.scope = 1
const SPANS = 0x12; // ScopeSpans.spans = 2

interface ScopeBatch {
  readonly scope: ScopeGroup;
  readonly spans: MessageBytes[];
  size: number;
}
interface ResourceBatch {
  readonly resource: ResourceGroup;
  readonly scopes: Map<ScopeGroup, ScopeBatch>;
  size: number;
}

/**
 * An ExportTraceServiceRequest holding `spans`, protobuf-encoded: each span's message bytes
 * regrouped under the resource and scope they came with, sizes worked out first and every byte
 * written once.
 */
export function encodeTraceRequest(spans: readonly CollectedSpan[]): Uint8Array {
  const resources = new Map<ResourceGroup, ResourceBatch>();
  for (const span of spans) {
    const { origin } = span;
    let resource = resources.get(origin.resource);
    if (resource === undefined) resources.set(origin.resource, (resource = { resource: origin.resource, scopes: new Map(), size: 0 }));
    let scope = resource.scopes.get(origin);
    if (scope === undefined) resource.scopes.set(origin, (scope = { scope: origin, spans: [], size: 0 }));
    // A span's message is never empty: empty bytes are a span let go before it was sent (BytesLease).
    if (span.raw.length === 0) throw new Error(`span of trace ${span.traceId}: its bytes were let go before it was encoded`);
    scope.spans.push(span.raw);
    scope.size += fieldSize(span.raw.length);
  }
  let total = 0;
  for (const resource of resources.values()) {
    // Empty strings are proto3 defaults: left out, as senders leave them out.
    resource.size = optionalSize(resource.resource.raw) + stringSize(resource.resource.schemaUrl);
    for (const scope of resource.scopes.values()) {
      scope.size += optionalSize(scope.scope.raw) + stringSize(scope.scope.schemaUrl);
      resource.size += fieldSize(scope.size);
    }
    total += fieldSize(resource.size);
  }
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  const header = (tag: number, length: number) => {
    out[pos++] = tag;
    pos = writeVarint(out, pos, length);
  };
  const bytes = (tag: number, raw: MessageBytes) => {
    header(tag, raw.length);
    out.set(raw, pos);
    pos += raw.length;
  };
  const text = (tag: number, raw: GroupBytes) => {
    header(tag, raw.length);
    pos += out.write(raw, pos, 'latin1');
  };
  for (const resource of resources.values()) {
    header(RESOURCE_SPANS, resource.size);
    if (resource.resource.raw !== undefined) text(RESOURCE, resource.resource.raw);
    for (const scope of resource.scopes.values()) {
      header(SCOPE_SPANS, scope.size);
      if (scope.scope.raw !== undefined) text(SCOPE, scope.scope.raw);
      for (const span of scope.spans) bytes(SPANS, span);
      if (scope.scope.schemaUrl !== '') {
        header(SCHEMA_URL, Buffer.byteLength(scope.scope.schemaUrl));
        pos += out.write(scope.scope.schemaUrl, pos, 'utf8');
      }
    }
    if (resource.resource.schemaUrl !== '') {
      header(SCHEMA_URL, Buffer.byteLength(resource.resource.schemaUrl));
      pos += out.write(resource.resource.schemaUrl, pos, 'utf8');
    }
  }
  if (pos !== total) throw new Error(`encoded ${pos} bytes of the ${total} worked out`);
  return out;
}

/** A length-delimited field of `length` bytes with its one-byte tag. */
function fieldSize(length: number): number {
  return 1 + varintSize(length) + length;
}

function optionalSize(raw: GroupBytes | undefined): number {
  return raw === undefined ? 0 : fieldSize(raw.length);
}

function stringSize(text: string): number {
  return text === '' ? 0 : fieldSize(Buffer.byteLength(text));
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
