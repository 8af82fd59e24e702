import { describe, expect, it } from 'vitest';
import { operationIdentity, operationKey, outerDuplicateSpanIds, sameOperation, type LinkedOperationSpan } from '../src/nested-operations';

const pg = { 'db.system.name': 'postgresql' };

describe('operationIdentity', () => {
  it('knows a DB span by its system alone, as it starts (pg adds the statement later)', () => {
    expect(operationIdentity('client', 'pg.query:SELECT test', pg)).toEqual({ type: 'db', system: 'postgresql' });
    expect(operationIdentity('client', 'first test.rbos_items', { 'db.system': 'PostgreSQL' })).toEqual({ type: 'db', system: 'postgresql' });
    expect(operationIdentity('client', 'insert', { 'db.system': 'mariadb' })).toEqual({ type: 'db', system: 'mysql' });
    // instrumentation-knex names the system after Knex's client.
    expect(operationIdentity('client', 'select test.items', { 'db.system.name': 'mysql2' })).toEqual({ type: 'db', system: 'mysql' });
  });

  it('leaves out connection spans and spans that report no operation', () => {
    expect(operationIdentity('client', 'pg-pool.connect', pg)).toBeUndefined();
    expect(operationIdentity('internal', 'prisma:client:operation', { method: 'findUnique', model: 'User' })).toBeUndefined();
    expect(operationIdentity('server', 'GET /users', { 'http.request.method': 'GET' })).toBeUndefined();
  });

  it('knows an HTTP client span by method and URL', () => {
    expect(operationIdentity('client', 'GET', { 'http.request.method': 'get', 'url.full': 'http://a/x' })).toEqual({
      type: 'http_client',
      method: 'GET',
      url: 'http://a/x',
    });
    expect(operationIdentity('client', 'GET', { 'http.method': 'POST', 'http.url': 'http://a/y' })).toEqual({
      type: 'http_client',
      method: 'POST',
      url: 'http://a/y',
    });
  });
});

describe('sameOperation', () => {
  const db = (system: string) => ({ type: 'db', system }) as const;
  const call = (method: string, url?: string) => ({ type: 'http_client', method, url }) as const;

  it('pairs a DB span with a DB span of the same system only', () => {
    expect(sameOperation(db('postgresql'), db('postgresql'))).toBe(true);
    expect(sameOperation(db('postgresql'), db('redis'))).toBe(false);
    expect(sameOperation(db('postgresql'), call('GET'))).toBe(false);
  });

  it('pairs HTTP client spans of the same method and URL, or of the same method when one has no URL', () => {
    expect(sameOperation(call('GET', 'http://a/x'), call('GET', 'http://a/x'))).toBe(true);
    expect(sameOperation(call('GET', 'http://a/x'), call('GET', 'http://a/y'))).toBe(false);
    expect(sameOperation(call('GET', 'http://a/x'), call('POST', 'http://a/x'))).toBe(false);
    expect(sameOperation(call('GET'), call('GET', 'http://a/x'))).toBe(true);
    expect(sameOperation(call('GET'), db('postgresql'))).toBe(false);
  });

  it('gives side-by-side spans of one operation the same key, and others different ones', () => {
    expect(operationKey(call('GET', 'http://a/x'))).toBe(operationKey(call('GET', 'http://a/x')));
    expect(operationKey(call('GET', 'http://a/x'))).not.toBe(operationKey(call('GET', 'http://a/y')));
    expect(operationKey(db('postgresql'))).not.toBe(operationKey(db('mysql')));
  });
});

describe('outerDuplicateSpanIds (a whole trace, as the collector has it)', () => {
  const span = (
    spanId: string,
    parentSpanId: string | undefined,
    kind: 'client' | 'internal' | 'server',
    name: string,
    attributes: Record<string, unknown>,
  ): LinkedOperationSpan => ({
    spanId,
    parentSpanId,
    identity: operationIdentity(kind, name, attributes),
  });

  it('marks Prisma db_query spans over the pg driver spans, looking through spans that report nothing', () => {
    const trace = [
      span('root', undefined, 'server', 'GET /users', { 'http.request.method': 'GET' }),
      span('op', 'root', 'internal', 'prisma:client:operation', {}),
      span('q1', 'op', 'client', 'prisma:client:db_query', { ...pg, 'db.query.text': 'SELECT 1' }),
      span('p1', 'q1', 'client', 'pg.query:SELECT test', pg),
      span('tx', 'op', 'internal', 'prisma:client:start_transaction', {}),
      span('begin', 'tx', 'client', 'pg.query:BEGIN test', pg),
      span('q2', 'op', 'client', 'prisma:client:db_query', { ...pg, 'db.query.text': 'INSERT' }),
      span('conn', 'q2', 'client', 'pg-pool.connect', pg),
      span('p2', 'conn', 'client', 'pg.query:INSERT test', pg),
    ];
    expect([...outerDuplicateSpanIds(trace)].sort()).toEqual(['q1', 'q2']);
  });

  it('keeps a DB span whose children are another system, and nested HTTP calls to different URLs', () => {
    const trace = [
      span('q', '', 'client', 'pg.query', pg),
      span('r', 'q', 'client', 'get', { 'db.system.name': 'redis' }),
      span('h1', '', 'client', 'GET', { 'http.request.method': 'GET', 'url.full': 'http://a/1' }),
      span('h2', 'h1', 'client', 'GET', { 'http.request.method': 'GET', 'url.full': 'http://a/2' }),
      span('h3', 'h2', 'client', 'GET', { 'http.request.method': 'GET', 'url.full': 'http://a/2' }),
    ];
    expect([...outerDuplicateSpanIds(trace)]).toEqual(['h2']);
  });

  it('survives a parent cycle', () => {
    const trace = [span('a', 'b', 'internal', 'x', {}), span('b', 'a', 'internal', 'y', {}), span('c', 'a', 'client', 'pg.query', pg)];
    expect(outerDuplicateSpanIds(trace).size).toBe(0);
  });

  it('does not take a span that is its own parent, or comes round a cycle to itself, for its own outer duplicate', () => {
    expect(outerDuplicateSpanIds([span('s', 's', 'client', 'pg.query', pg)]).size).toBe(0);
    const loop = [span('q', 'm', 'client', 'pg.query', pg), span('m', 'n', 'internal', 'x', {}), span('n', 'q', 'internal', 'y', {})];
    expect(outerDuplicateSpanIds(loop).size).toBe(0);
    // The same, the query sent twice (a sender's retry): the walk comes round to its id, not its object.
    const retried = span('q', 'm', 'client', 'pg.query', pg);
    expect(outerDuplicateSpanIds([...loop, retried]).size).toBe(0);
    expect(outerDuplicateSpanIds([span('s', 's', 'client', 'pg.query', pg), span('s', 's', 'client', 'pg.query', pg)]).size).toBe(0);
  });
});
