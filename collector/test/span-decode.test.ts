/**
 * The one-pass decoder and the byte splicing of what is written on roots, against the official
 * schema (the opentelemetry-proto .proto files): values read as the official decoder reads them,
 * unknown fields left out, bytes that are not UTF-8 re-encoded, fields with another wire type
 * refused, and a root's replaced attributes and status present once, with the new value.
 */
import { describe, expect, it } from 'vitest';
import { encodeTraceRequest } from '../src/exporter/otlp-encode';
import { keyValuesToPlain, type WireKeyValue } from '../src/otlp/otlp-model';
import { SpanEdits } from '../src/otlp/span-edit';
import { decodeTraceRequest, OtlpDecodeError } from '../src/receiver/otlp-decode';
import { ExportTraceServiceRequest, otlpRoot } from '../../test/support/otlp-schema';
import { lengthDelimited, validSpanBytes } from './support/wire-bytes';

const Span = otlpRoot.lookupType('opentelemetry.proto.trace.v1.Span');
const Resource = otlpRoot.lookupType('opentelemetry.proto.resource.v1.Resource');
const Scope = otlpRoot.lookupType('opentelemetry.proto.common.v1.InstrumentationScope');

const bytesOf = (type: typeof Span, object: Record<string, unknown>) => Buffer.from(type.encode(type.fromObject(object)).finish());

/** A request of one resource, one scope, and the given span messages (extra bytes appended to each part as given). */
function request(spans: Buffer[], extra: { resource?: Buffer; scope?: Buffer } = {}): Buffer {
  const resource = Buffer.concat([
    bytesOf(Resource, { attributes: [{ key: 'service.name', value: { stringValue: 'orders' } }] }),
    extra.resource ?? Buffer.alloc(0),
  ]);
  const scope = Buffer.concat([bytesOf(Scope, { name: 'psycopg', version: '1.0' }), extra.scope ?? Buffer.alloc(0)]);
  const scopeSpans = Buffer.concat([lengthDelimited(1, scope), ...spans.map((span) => lengthDelimited(2, span))]);
  return lengthDelimited(1, Buffer.concat([lengthDelimited(1, resource), lengthDelimited(2, scopeSpans)]));
}

const officialSpans = (body: Uint8Array) =>
  (
    ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), { longs: String, bytes: String, defaults: false }) as {
      resourceSpans: { resource: unknown; scopeSpans: { scope: unknown; spans: Record<string, unknown>[] }[] }[];
    }
  ).resourceSpans;

describe('attribute values', () => {
  it('are what the official decoder reads, for every AnyValue member', () => {
    // Only the names core reads are read (the others stay in the bytes): one for each member here.
    const K = {
      s: 'db.query.text',
      empty: 'db.statement',
      t: 'request_budget.http_client.timed',
      f: 'request_budget.measurement',
      i: 'cost.db.queries',
      negative: 'cost.db.rows',
      min: 'cost.db.bytes',
      beyond: 'cost.heap.delta_bytes',
      safe: 'cost.db.repeated_count',
      unsafeNegative: 'cost.heap.in_flight',
      d: 'cost.db.time_ms',
      b: 'db.system',
      a: 'budget.violations',
      kv: 'http.route',
      none: 'db.operation.name',
      dup: 'http.method',
    } as const;
    const attributes = [
      { key: K.s, value: { stringValue: 'héllo ✓' } },
      { key: K.empty, value: { stringValue: '' } },
      { key: K.t, value: { boolValue: true } },
      { key: K.f, value: { boolValue: false } },
      { key: K.i, value: { intValue: 42 } },
      { key: K.negative, value: { intValue: -7 } },
      { key: K.min, value: { intValue: '-9223372036854775808' } },
      { key: K.beyond, value: { intValue: '9007199254740993' } },
      { key: K.safe, value: { intValue: '9007199254740991' } },
      { key: K.unsafeNegative, value: { intValue: '-9007199254740993' } },
      { key: K.d, value: { doubleValue: 0.125 } },
      { key: K.b, value: { bytesValue: Buffer.from('raw bytes') } },
      { key: K.a, value: { arrayValue: { values: [{ stringValue: 'x' }, { intValue: 2 }, { arrayValue: { values: [{ boolValue: true }] } }] } } },
      {
        key: K.kv,
        value: {
          kvlistValue: {
            values: [
              { key: 'inner', value: { doubleValue: 1.5 } },
              { key: '__proto__', value: { stringValue: 'own' } },
            ],
          },
        },
      },
      { key: K.none, value: {} },
      { key: K.dup, value: { stringValue: 'first' } },
      { key: 'server.address', value: { stringValue: 'not read' } },
      { key: K.dup, value: { stringValue: 'last' } },
    ];
    const { bytes } = validSpanBytes({ attributes });
    const [span] = decodeTraceRequest(request([bytes]), 'protobuf').spans;
    const official = Span.decode(bytes) as unknown as { attributes: WireKeyValue[] };
    // As the previous decoder read them (protobufjs and keyValuesToPlain), but for two of its slips:
    // an AnyValue with no member read as '' (it is null), a `__proto__` key set the prototype.
    const { [K.none]: _none, [K.kv]: _kv, ...comparable } = span!.attributes;
    const { [K.none]: previousNone, [K.kv]: _previousKv, 'server.address': notRead, ...previous } = keyValuesToPlain(official.attributes);
    expect(comparable).toEqual(previous);
    expect(previousNone).toBe('');
    expect(notRead).toBe('not read');
    expect(span!.attributes).toEqual({
      [K.s]: 'héllo ✓',
      [K.empty]: '',
      [K.t]: true,
      [K.f]: false,
      [K.i]: 42,
      [K.negative]: -7,
      [K.min]: -9223372036854775808n,
      [K.beyond]: 9007199254740993n,
      [K.safe]: 9007199254740991,
      [K.unsafeNegative]: -9007199254740993n,
      [K.d]: 0.125,
      [K.b]: Buffer.from('raw bytes').toString('base64'),
      [K.a]: ['x', 2, [true]],
      [K.kv]: Object.defineProperty({ inner: 1.5 }, '__proto__', { value: 'own', enumerable: true, writable: true, configurable: true }),
      [K.none]: null,
      [K.dup]: 'last',
    });
    expect(Object.getPrototypeOf(span!.attributes[K.kv])).toBe(Object.prototype);
  });

  it('are read for the names core reads or writes, the others left in the bytes and forwarded as they came', () => {
    const attributes = [
      { key: 'server.address', value: { stringValue: 'db.internal' } },
      { key: 'db.system.name', value: { stringValue: 'postgresql' } },
      // A key that is a contract name's prefix, or one with the same length and last byte, is not one.
      { key: 'db.system.nam', value: { stringValue: 'prefix' } },
      { key: 'db.system.nbme', value: { stringValue: 'same length and last byte' } },
      { key: 'db.query.text', value: { stringValue: 'SELECT 1' } },
      { key: '', value: { stringValue: 'empty key' } },
      { key: 'http.route', value: { stringValue: '/a' } },
    ];
    const { bytes } = validSpanBytes({ attributes });
    const [span] = decodeTraceRequest(request([bytes]), 'protobuf').spans;
    expect(span!.attributes).toEqual({ 'db.system.name': 'postgresql', 'db.query.text': 'SELECT 1', 'http.route': '/a' });
    const forwarded = Span.decode(span!.raw) as unknown as { attributes: WireKeyValue[] };
    expect(keyValuesToPlain(forwarded.attributes)).toEqual(keyValuesToPlain((Span.decode(bytes) as unknown as { attributes: WireKeyValue[] }).attributes));
  });
});

describe('the root marker', () => {
  it('is read at decoding as the attribute map reads it: the last member of its value, fields unknown here aside', () => {
    const marker = (value: number[]) =>
      lengthDelimited(9, Buffer.concat([lengthDelimited(1, Buffer.from('request_budget.root')), lengthDelimited(2, Buffer.from(value))]));
    const cases: [number[], boolean][] = [
      [[0x10, 0x01], true],
      [[0x10, 0x01, 0x40, 0x00], true], // bool true, then unknown field 8
      [[0x10, 0x01, 0x0a, 0x00], false], // bool true, then a string: the string wins
      [[0x0a, 0x00, 0x10, 0x01], true],
      [[0x10, 0x00], false],
    ];
    for (const [value, expected] of cases) {
      const [span] = decodeTraceRequest(request([Buffer.concat([validSpanBytes().bytes, marker(value)])]), 'protobuf').spans;
      expect([span!.markedRoot, span!.attributes['request_budget.root'] === true]).toEqual([expected, expected]);
    }
  });
});

describe('what is forwarded', () => {
  it('is each message as it came, without the fields unknown to OTLP, at every level', () => {
    const unknown = lengthDelimited(99, Buffer.from('not in the schema'));
    const first = validSpanBytes({ attributes: [{ key: 'k', value: { intValue: 1 } }], status: { code: 1, message: 'ok' } });
    const second = validSpanBytes({ events: [{ timeUnixNano: 5, name: 'e' }], links: [{ traceId: Buffer.alloc(16, 1), spanId: Buffer.alloc(8, 2) }] });
    const withUnknown = request([Buffer.concat([first.bytes, unknown]), Buffer.concat([unknown, second.bytes])], { resource: unknown, scope: unknown });
    const withoutUnknown = request([first.bytes, second.bytes]);
    const { spans } = decodeTraceRequest(withUnknown, 'protobuf');
    expect(spans.map((span) => span.spanId)).toEqual([first.spanId, second.spanId]);
    const forwarded = Buffer.from(encodeTraceRequest(spans));
    expect(forwarded.equals(withoutUnknown)).toBe(true);
    expect(officialSpans(forwarded)).toEqual(officialSpans(withoutUnknown));
  });

  it('re-encodes a span whose strings are not UTF-8, with U+FFFD in their place, and leaves the others byte for byte', () => {
    const good = validSpanBytes({ name: 'SELECT', attributes: [{ key: 'db.system', value: { stringValue: 'postgresql' } }] });
    // "caf\xe9": Latin-1, not UTF-8, in the name and in an attribute value.
    const bad = validSpanBytes({ name: 'PLACEHOLDER', attributes: [{ key: 'db.statement', value: { stringValue: 'PLACEHOLDER' } }] });
    const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x21, 0x21, 0x21, 0x21, 0x21, 0x21, 0x21]); // same length as PLACEHOLDER
    const badBytes = Buffer.from(bad.bytes);
    for (let at = badBytes.indexOf('PLACEHOLDER'); at !== -1; at = badBytes.indexOf('PLACEHOLDER')) latin1.copy(badBytes, at);
    const { spans } = decodeTraceRequest(request([good.bytes, badBytes]), 'protobuf');
    expect(spans[1]!.name).toBe('caf\uFFFD!!!!!!!');
    expect(spans[1]!.attributes['db.statement']).toBe('caf\uFFFD!!!!!!!');
    expect(spans[0]!.raw.equals(good.bytes)).toBe(true);
    const reencoded = spans[1]!.raw;
    expect(reencoded.includes(Buffer.from('caf\uFFFD!!!!!!!'))).toBe(true);
    expect(reencoded.includes(Buffer.from([0x66, 0xe9, 0x21]))).toBe(false);
    expect((Span.decode(reencoded) as unknown as { name: string }).name).toBe('caf\uFFFD!!!!!!!');
  });
});

describe('a body that is not OTLP', () => {
  it.each([
    ['a span name sent as a varint', Buffer.from([0x28, 0x01]), 'Span.name (field 5) has wire type varint; length-delimited expected'],
    [
      'an event name sent as fixed32',
      lengthDelimited(11, Buffer.from([0x15, 1, 2, 3, 4])),
      'Event.name (field 2) has wire type fixed32; length-delimited expected',
    ],
    [
      'a status code sent as fixed64',
      lengthDelimited(15, Buffer.from([0x19, 1, 2, 3, 4, 5, 6, 7, 8])),
      'Status.code (field 3) has wire type fixed64; varint expected',
    ],
    [
      'an attribute value of the wrong type',
      lengthDelimited(9, Buffer.from([0x0a, 0x01, 0x6b, 0x15, 0, 0, 0, 0])),
      'KeyValue.value (field 2) has wire type fixed32; length-delimited expected',
    ],
    ['a group', Buffer.from([0xa3, 0x01]), 'wire type start-group at offset'],
  ])('refuses %s, naming the field', (_what, field, message) => {
    const { bytes } = validSpanBytes();
    let error: unknown;
    try {
      decodeTraceRequest(request([Buffer.concat([bytes, field])]), 'protobuf');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(OtlpDecodeError);
    expect((error as Error).message).toContain(`protobuf ExportTraceServiceRequest did not decode: ${message}`);
  });
});

describe('what is written on a root', () => {
  it('leaves the bytes it came with whole when it only adds attributes and events', () => {
    const { bytes } = validSpanBytes({ attributes: [{ key: 'http.route', value: { stringValue: '/orders' } }], status: { code: 1 } });
    const [span] = decodeTraceRequest(request([bytes]), 'protobuf').spans;
    const edits = new SpanEdits();
    edits.setAttribute('budget.breached', { boolValue: false }, false);
    edits.applyTo(span!);
    const written = span!.raw;
    expect(written.subarray(0, bytes.length).equals(bytes)).toBe(true);
    const decoded = Span.toObject(Span.decode(written), { defaults: false }) as { attributes: WireKeyValue[]; status: unknown };
    expect(keyValuesToPlain(decoded.attributes)).toEqual({ 'http.route': '/orders', 'budget.breached': false });
    expect(decoded.status).toEqual({ code: 1 });
  });

  it('writes a KeyValue with an empty key or without a value as protobuf reads it', () => {
    const { bytes } = validSpanBytes({});
    const [span] = decodeTraceRequest(request([bytes]), 'protobuf').spans;
    const edits = new SpanEdits();
    edits.events.push({
      timeUnixNano: '5',
      name: 'e',
      attributes: [
        { key: '', value: { stringValue: 'no key' } },
        { key: 'no value', value: null },
        { key: 'ключ', value: { stringValue: 'значение' } },
      ],
    });
    edits.applyTo(span!);
    const decoded = Span.toObject(Span.decode(span!.raw), { defaults: false }) as { events: { attributes: { key?: string; value?: unknown }[] }[] };
    expect(decoded.events[0]!.attributes).toEqual([
      { value: { stringValue: 'no key' } },
      { key: 'no value' },
      { key: 'ключ', value: { stringValue: 'значение' } },
    ]);
  });

  it('replaces attributes of the same key and the status, keeps every other field, and appends events', () => {
    const { bytes } = validSpanBytes({
      attributes: [
        { key: 'http.route', value: { stringValue: '/orders' } },
        { key: 'budget.breached', value: { boolValue: false } },
        { key: 'http.status_code', value: { intValue: 200 } },
      ],
      status: { code: 1, message: 'fine' },
      events: [{ timeUnixNano: 7, name: 'kept' }],
    });
    const [span] = decodeTraceRequest(request([bytes]), 'protobuf').spans;
    const edits = new SpanEdits();
    edits.setAttribute('budget.breached', { boolValue: true }, true);
    edits.setAttribute('cost.db.queries', { intValue: 12 }, false);
    edits.setAttribute('big', { intValue: '-9223372036854775808' }, false);
    edits.setAttribute('rules', { arrayValue: { values: [{ stringValue: 'a' }, { stringValue: 'é' }] } }, false);
    edits.events.push({ timeUnixNano: '1700000000000000001', name: 'budget.breach', attributes: [{ key: 'limit', value: { doubleValue: 2.5 } }] });
    edits.status = { code: 2, message: 'over budget' };
    const before = span!.estimatedBytes;
    const rawBefore = span!.raw.length;
    edits.applyTo(span!);
    expect(span!.estimatedBytes - before).toBe(span!.raw.length - rawBefore);
    const decoded = Span.toObject(Span.decode(span!.raw), { longs: String, defaults: false }) as {
      attributes: WireKeyValue[];
      status: unknown;
      events: { name: string; timeUnixNano: string; attributes: WireKeyValue[] }[];
    };
    expect(decoded.attributes.map((kv) => kv.key)).toEqual(['http.route', 'http.status_code', 'budget.breached', 'cost.db.queries', 'big', 'rules']);
    expect(keyValuesToPlain(decoded.attributes)).toEqual({
      'http.route': '/orders',
      'http.status_code': 200,
      'budget.breached': true,
      'cost.db.queries': 12,
      big: -9223372036854775808n,
      rules: ['a', 'é'],
    });
    expect(decoded.status).toEqual({ code: 2, message: 'over budget' });
    expect(decoded.events.map((event) => [event.name, event.timeUnixNano, keyValuesToPlain(event.attributes)])).toEqual([
      ['kept', '7', {}],
      ['budget.breach', '1700000000000000001', { limit: 2.5 }],
    ]);
    // What the collector wrote reads the same through protobufjs' own encoder.
    const written = Span.encode(
      Span.fromObject({
        attributes: [...edits.attributes].map(([key, value]) => ({ key, value })),
        events: edits.events,
        status: edits.status,
      }),
    ).finish();
    expect(span!.raw.subarray(span!.raw.length - written.length)).toEqual(Buffer.from(written));
  });
});
