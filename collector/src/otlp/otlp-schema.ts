/**
 * The OTLP trace schema, described with protobufjs' reflection API from the field numbers of the
 * OpenTelemetry protocol specification (opentelemetry-proto: common/v1/common.proto,
 * resource/v1/resource.proto, trace/v1/trace.proto, collector/trace/v1/trace_service.proto), plus
 * google.rpc.Status for error bodies.
 *
 * No npm package ships the official definitions for production use: @opentelemetry/otlp-transformer
 * encodes by hand and decodes only responses; the packages that carry the .proto files are test
 * tools. The test collector/test/otlp-schema.test.ts proves this description against the official
 * .proto files, type by type and field by field, and by decoding what the real OTLP exporter sends.
 *
 * Field names are protobufjs' lowerCamelCase, as it names them when loading .proto files; OTLP/JSON
 * uses the same names.
 */
import protobuf from 'protobufjs';

type Fields = Record<string, { type: string; id: number; rule?: 'repeated' }>;

const field = (type: string, id: number) => ({ type, id });
const repeated = (type: string, id: number) => ({ type, id, rule: 'repeated' as const });
const message = (fields: Fields, extra: Record<string, unknown> = {}) => ({ fields, ...extra });

const COMMON = 'opentelemetry.proto.common.v1';
const RESOURCE = 'opentelemetry.proto.resource.v1';
const TRACE = 'opentelemetry.proto.trace.v1';

/** protobufjs JSON descriptor of the trace subset of OTLP (1.x, entity refs from 1.6 included). */
const DESCRIPTOR = {
  nested: {
    opentelemetry: {
      nested: {
        proto: {
          nested: {
            common: {
              nested: {
                v1: {
                  nested: {
                    AnyValue: message(
                      {
                        stringValue: field('string', 1),
                        boolValue: field('bool', 2),
                        intValue: field('int64', 3),
                        doubleValue: field('double', 4),
                        arrayValue: field('ArrayValue', 5),
                        kvlistValue: field('KeyValueList', 6),
                        bytesValue: field('bytes', 7),
                      },
                      { oneofs: { value: { oneof: ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue'] } } },
                    ),
                    ArrayValue: message({ values: repeated('AnyValue', 1) }),
                    KeyValueList: message({ values: repeated('KeyValue', 1) }),
                    KeyValue: message({ key: field('string', 1), value: field('AnyValue', 2) }),
                    InstrumentationScope: message({
                      name: field('string', 1),
                      version: field('string', 2),
                      attributes: repeated('KeyValue', 3),
                      droppedAttributesCount: field('uint32', 4),
                    }),
                    EntityRef: message({
                      schemaUrl: field('string', 1),
                      type: field('string', 2),
                      idKeys: repeated('string', 3),
                      descriptionKeys: repeated('string', 4),
                    }),
                  },
                },
              },
            },
            resource: {
              nested: {
                v1: {
                  nested: {
                    Resource: message({
                      attributes: repeated(`${COMMON}.KeyValue`, 1),
                      droppedAttributesCount: field('uint32', 2),
                      entityRefs: repeated(`${COMMON}.EntityRef`, 3),
                    }),
                  },
                },
              },
            },
            trace: {
              nested: {
                v1: {
                  nested: {
                    TracesData: message({ resourceSpans: repeated('ResourceSpans', 1) }),
                    ResourceSpans: message({
                      resource: field(`${RESOURCE}.Resource`, 1),
                      scopeSpans: repeated('ScopeSpans', 2),
                      schemaUrl: field('string', 3),
                    }),
                    ScopeSpans: message({
                      scope: field(`${COMMON}.InstrumentationScope`, 1),
                      spans: repeated('Span', 2),
                      schemaUrl: field('string', 3),
                    }),
                    Span: message(
                      {
                        traceId: field('bytes', 1),
                        spanId: field('bytes', 2),
                        traceState: field('string', 3),
                        parentSpanId: field('bytes', 4),
                        flags: field('fixed32', 16),
                        name: field('string', 5),
                        kind: field('SpanKind', 6),
                        startTimeUnixNano: field('fixed64', 7),
                        endTimeUnixNano: field('fixed64', 8),
                        attributes: repeated(`${COMMON}.KeyValue`, 9),
                        droppedAttributesCount: field('uint32', 10),
                        events: repeated('Event', 11),
                        droppedEventsCount: field('uint32', 12),
                        links: repeated('Link', 13),
                        droppedLinksCount: field('uint32', 14),
                        status: field('Status', 15),
                      },
                      {
                        nested: {
                          SpanKind: {
                            values: {
                              SPAN_KIND_UNSPECIFIED: 0,
                              SPAN_KIND_INTERNAL: 1,
                              SPAN_KIND_SERVER: 2,
                              SPAN_KIND_CLIENT: 3,
                              SPAN_KIND_PRODUCER: 4,
                              SPAN_KIND_CONSUMER: 5,
                            },
                          },
                          Event: message({
                            timeUnixNano: field('fixed64', 1),
                            name: field('string', 2),
                            attributes: repeated(`${COMMON}.KeyValue`, 3),
                            droppedAttributesCount: field('uint32', 4),
                          }),
                          Link: message({
                            traceId: field('bytes', 1),
                            spanId: field('bytes', 2),
                            traceState: field('string', 3),
                            attributes: repeated(`${COMMON}.KeyValue`, 4),
                            droppedAttributesCount: field('uint32', 5),
                            flags: field('fixed32', 6),
                          }),
                        },
                      },
                    ),
                    Status: message(
                      { message: field('string', 2), code: field('StatusCode', 3) },
                      { nested: { StatusCode: { values: { STATUS_CODE_UNSET: 0, STATUS_CODE_OK: 1, STATUS_CODE_ERROR: 2 } } } },
                    ),
                    SpanFlags: {
                      values: {
                        SPAN_FLAGS_DO_NOT_USE: 0,
                        SPAN_FLAGS_TRACE_FLAGS_MASK: 0xff,
                        SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK: 0x100,
                        SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK: 0x200,
                      },
                    },
                  },
                },
              },
            },
            collector: {
              nested: {
                trace: {
                  nested: {
                    v1: {
                      nested: {
                        ExportTraceServiceRequest: message({ resourceSpans: repeated(`${TRACE}.ResourceSpans`, 1) }),
                        ExportTraceServiceResponse: message({ partialSuccess: field('ExportTracePartialSuccess', 1) }),
                        ExportTracePartialSuccess: message({ rejectedSpans: field('int64', 1), errorMessage: field('string', 2) }),
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
    google: {
      nested: {
        protobuf: { nested: { Any: message({ typeUrl: field('string', 1), value: field('bytes', 2) }) } },
        rpc: {
          nested: {
            Status: message({ code: field('int32', 1), message: field('string', 2), details: repeated('google.protobuf.Any', 3) }),
          },
        },
      },
    },
  },
};

/** The schema root: every type above, resolved. */
export const otlpRoot: protobuf.Root = protobuf.Root.fromJSON(DESCRIPTOR);
otlpRoot.resolveAll();

export const ExportTraceServiceRequest: protobuf.Type = otlpRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
export const ExportTraceServiceResponse: protobuf.Type = otlpRoot.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse');
export const RpcStatus: protobuf.Type = otlpRoot.lookupType('google.rpc.Status');

/** OTLP SpanKind numbers. */
export const SpanKind = { UNSPECIFIED: 0, INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;
/** OTLP Status.StatusCode numbers. */
export const StatusCode = { UNSET: 0, OK: 1, ERROR: 2 } as const;
/** Span.flags bits saying whether the parent is known to be remote (OTLP 1.1+). */
export const SpanFlags = { CONTEXT_HAS_IS_REMOTE: 0x100, CONTEXT_IS_REMOTE: 0x200 } as const;
