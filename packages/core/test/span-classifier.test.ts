import { describe, expect, it } from 'vitest';
import { classifySpan } from '../src/span-classifier';

describe('classifySpan', () => {
  it('counts a pg query with its statement and rows', () => {
    expect(
      classifySpan('client', 'SELECT test', {
        'db.system.name': 'postgresql',
        'db.query.text': 'SELECT $1::int',
        'db.response.returned_rows': 5000,
      }),
    ).toEqual({ type: 'db', statement: 'SELECT $1::int', rows: 5000 });
  });

  it('reads the wire bytes of the rows beside them, and ignores bytes that are not a non-negative integer', () => {
    const span = (bytes: unknown) => ({
      'db.system.name': 'postgresql',
      'db.query.text': 'q',
      'db.response.returned_rows': 2,
      'request_budget.db.response_bytes': bytes,
    });
    expect(classifySpan('client', 'q', span(36))).toStrictEqual({ type: 'db', statement: 'q', rows: 2, bytes: 36 });
    // OTLP decoders may hand a 64-bit integer over as a bigint.
    expect(classifySpan('client', 'q', span(36n))).toStrictEqual({ type: 'db', statement: 'q', rows: 2, bytes: 36 });
    for (const bad of [-1, 1.5, '36', undefined])
      expect(classifySpan('client', 'q', span(bad))).toStrictEqual({ type: 'db', statement: 'q', rows: 2, bytes: undefined });
  });

  it('excludes connection acquisition spans although they carry the DB system', () => {
    expect(classifySpan('client', 'pg-pool.connect', { 'db.system.name': 'postgresql' })).toBeUndefined();
    expect(classifySpan('client', 'pg.connect', { 'db.system.name': 'postgresql' })).toBeUndefined();
    expect(classifySpan('client', 'connect', { 'db.system.name': 'redis', 'db.query.text': 'connect' })).toBeUndefined();
  });

  it('accepts the deprecated attribute names of older SDKs', () => {
    expect(classifySpan('client', 'mysql', { 'db.system': 'mysql', 'db.statement': 'SELECT 1' })).toEqual({
      type: 'db',
      statement: 'SELECT 1',
      rows: undefined,
    });
  });

  it('falls back to the operation name when there is no statement text', () => {
    expect(classifySpan('client', 'mongodb.find', { 'db.system.name': 'mongodb', 'db.operation.name': 'find' })).toEqual({
      type: 'db',
      statement: 'find',
      rows: undefined,
    });
    expect(classifySpan('client', 'x', { 'db.system.name': 'mongodb' })).toBeUndefined();
  });

  it('counts HTTP client spans and reads the timed flag only when it is a boolean', () => {
    expect(classifySpan('client', 'GET', { 'http.request.method': 'GET', 'request_budget.http_client.timed': false })).toEqual({
      type: 'http_client',
      timed: false,
    });
    expect(classifySpan('client', 'GET', { 'http.method': 'GET', 'request_budget.http_client.timed': 'no' })).toEqual({
      type: 'http_client',
      timed: undefined,
    });
  });

  it('ignores server spans and internal spans', () => {
    expect(classifySpan('server', 'GET /x', { 'http.request.method': 'GET' })).toBeUndefined();
    expect(classifySpan('internal', 'middleware', {})).toBeUndefined();
  });

  it('ignores rows that are not a non-negative integer', () => {
    expect(classifySpan('client', 'q', { 'db.system.name': 'postgresql', 'db.query.text': 'q', 'db.response.returned_rows': -1 })).toEqual({
      type: 'db',
      statement: 'q',
      rows: undefined,
    });
  });
});
