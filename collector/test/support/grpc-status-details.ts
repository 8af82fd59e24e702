/**
 * The `grpc-status-details-bin` trailer of a gRPC refusal, decoded as grpc-go and otelcol's
 * exporterhelper read it: a google.rpc.Status (status.proto) whose details are Any messages, a
 * google.rpc.RetryInfo (error_details.proto) among them. Any and Duration are protobufjs's
 * bundled copies of the well-known types.
 */
import protobuf from 'protobufjs';

export const RETRY_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.RetryInfo';

const root = new protobuf.Root();
protobuf.parse(
  `syntax = "proto3";
  package google.rpc;
  import "google/protobuf/any.proto";
  import "google/protobuf/duration.proto";
  message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
  message RetryInfo { google.protobuf.Duration retry_delay = 1; }`,
  root,
  // The bundled Any is spelled as in any.proto (type_url): these are too.
  { keepCase: true },
);
for (const file of ['google/protobuf/any.proto', 'google/protobuf/duration.proto']) root.addJSON(protobuf.common.get(file)!.nested!);
root.resolveAll();
const Status = root.lookupType('google.rpc.Status');
const RetryInfo = root.lookupType('google.rpc.RetryInfo');

export interface StatusDetails {
  readonly code: number;
  readonly message: string;
  /** Each detail's type, with the retry delay of a RetryInfo. */
  readonly details: { typeUrl: string; retryDelay?: { seconds: number; nanos: number } }[];
}

export function decodeStatusDetails(trailer: Uint8Array): StatusDetails {
  const status = Status.toObject(Status.decode(trailer), { defaults: true }) as {
    code: number;
    message: string;
    details: { type_url: string; value: Uint8Array }[];
  };
  return {
    code: status.code,
    message: status.message,
    details: status.details.map(({ type_url: typeUrl, value }) => {
      if (typeUrl !== RETRY_INFO_TYPE_URL) return { typeUrl };
      const retryInfo = RetryInfo.toObject(RetryInfo.decode(value), { longs: Number, defaults: true }) as { retry_delay: { seconds: number; nanos: number } };
      return { typeUrl, retryDelay: retryInfo.retry_delay };
    }),
  };
}
