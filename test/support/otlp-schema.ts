/**
 * The official OTLP trace schema, loaded with protobufjs from .proto files.
 *
 * Source: @elastic/mockotlpserver ships the opentelemetry-proto .proto files
 * unmodified (byte-identical to open-telemetry/opentelemetry-proto tag v1.4.0).
 * @opentelemetry/otlp-transformer 0.300 has no generated root any more (it encodes
 * by hand and only decodes the response), and no OpenTelemetry npm package ships
 * the .proto files, so this is the closest well-kept copy of the official schema.
 */
import path from 'node:path';
import protobuf from 'protobufjs';
import { requireFromRoot } from './paths';

const PROTO_PACKAGE = '@elastic/mockotlpserver';
const TRACE_SERVICE_PROTO = 'opentelemetry/proto/collector/trace/v1/trace_service.proto';

/** Directory that holds `opentelemetry/proto/...`. */
export const protoDir: string = path.dirname(requireFromRoot.resolve(`${PROTO_PACKAGE}/package.json`));

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  // The .proto imports are relative to the proto root ("opentelemetry/proto/..."),
  // not to the importing file, so resolve every path against protoDir.
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(protoDir, target));
  root.loadSync(TRACE_SERVICE_PROTO);
  root.resolveAll();
  return root;
}

/** The loaded schema root (trace, common, resource, collector/trace). */
export const otlpRoot: protobuf.Root = loadRoot();

/** opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest */
export const ExportTraceServiceRequest: protobuf.Type = otlpRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');

/** opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse */
export const ExportTraceServiceResponse: protobuf.Type = otlpRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse');

/** An empty ExportTraceServiceResponse, protobuf-encoded (zero bytes, but encoded via the schema). */
export function encodeEmptyResponse(): Uint8Array {
  return ExportTraceServiceResponse.encode(ExportTraceServiceResponse.create({})).finish();
}
