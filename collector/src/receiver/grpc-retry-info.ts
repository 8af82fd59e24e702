/**
 * The status details of a gRPC refusal to retry later: a google.rpc.Status carrying a
 * google.rpc.RetryInfo, in the `grpc-status-details-bin` trailer. otelcol's exporterhelper waits
 * its retry_delay before retrying UNAVAILABLE instead of its own backoff, as OTLP/HTTP senders wait
 * Retry-After. Three small messages, written by hand rather than added to the OTLP schema.
 */
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
export const RETRY_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.RetryInfo';

const VARINT = 0;
const LENGTH_DELIMITED = 2;
const tag = (field: number, wireType: number): number => (field << 3) | wireType;
const writer = (): protobuf.Writer => protobuf.Writer.create();

/** google.rpc.RetryInfo { google.protobuf.Duration retry_delay = 1 }, Duration { int64 seconds = 1 }. */
function retryInfo(seconds: number): Uint8Array {
  const duration = writer().uint32(tag(1, VARINT)).int64(seconds).finish();
  return writer().uint32(tag(1, LENGTH_DELIMITED)).bytes(duration).finish();
}

/** google.protobuf.Any { string type_url = 1; bytes value = 2 }. */
function any(typeUrl: string, value: Uint8Array): Uint8Array {
  return writer().uint32(tag(1, LENGTH_DELIMITED)).string(typeUrl).uint32(tag(2, LENGTH_DELIMITED)).bytes(value).finish();
}

/** google.rpc.Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3 }. */
function status(code: number, message: string, details: Uint8Array[]): Uint8Array {
  const status = writer().uint32(tag(1, VARINT)).int32(code).uint32(tag(2, LENGTH_DELIMITED)).string(message);
  for (const detail of details) status.uint32(tag(3, LENGTH_DELIMITED)).bytes(detail);
  return status.finish();
}

/** The trailer telling the sender to retry after `retryAfterSeconds` (the seconds of HTTP's Retry-After). */
export function retryInfoTrailer(code: grpc.status, message: string, retryAfterSeconds: number): grpc.Metadata {
  const trailer = new grpc.Metadata();
  trailer.set(STATUS_DETAILS_KEY, Buffer.from(status(code, message, [any(RETRY_INFO_TYPE_URL, retryInfo(retryAfterSeconds))])));
  return trailer;
}
