/**
 * The Zipkin rendering of a span's attributes: every attribute as a tag, read as judging reads
 * the contract's names (the last member of an AnyValue sent with several wins; `__proto__` is a key
 * like any other), not only the names judging reads.
 */
import { describe, expect, it } from 'vitest';
import { toZipkinSpan } from '../src/exporter/zipkin';
import { decodeTraceRequest } from '../src/receiver/otlp-decode';
import { lengthDelimited, requestOfSpan, validSpanBytes } from './support/wire-bytes';

const text = (id: number, value: string) => lengthDelimited(id, Buffer.from(value));
const keyValue = (key: string, anyValue: Buffer) => lengthDelimited(9, Buffer.concat([text(1, key), lengthDelimited(2, anyValue)]));

describe('Zipkin tags', () => {
  it('hold every attribute, as judging reads them', () => {
    const { bytes, spanId } = validSpanBytes({ name: 'GET /orders', kind: 2, attributes: [{ key: 'http.route', value: { stringValue: '/orders' } }] });
    const span = Buffer.concat([
      bytes,
      keyValue('__proto__', text(1, 'own')),
      // string "a", int 5, string "b": one AnyValue whose member was sent three times; the last counts.
      keyValue('db.system.name', Buffer.concat([text(1, 'a'), Buffer.from([(3 << 3) | 0, 5]), text(1, 'b')])),
      keyValue('server.port', Buffer.from([(3 << 3) | 0, 0xb8, 0x3f])),
      // An AnyValue without a member: an empty tag.
      keyValue('empty', Buffer.alloc(0)),
    ]);
    const [decoded] = decodeTraceRequest(requestOfSpan(span), 'protobuf').spans;
    expect(decoded!.attributes['db.system.name']).toBe('b');
    const zipkin = toZipkinSpan(decoded!);
    expect(zipkin.id).toBe(spanId);
    expect(Object.getPrototypeOf(zipkin.tags)).toBe(Object.prototype);
    expect(Object.entries(zipkin.tags)).toEqual([
      ['http.route', '/orders'],
      ['__proto__', 'own'],
      ['db.system.name', 'b'],
      ['server.port', '8120'],
      ['empty', ''],
    ]);
    expect(JSON.parse(JSON.stringify(zipkin)).tags.__proto__).toBe('own');
  });
});
