/**
 * Out of process too, one statement reported by two spans — an ORM's or query builder's span over
 * its driver's, as Knex's and Prisma's instrumentations make them — counts once: the driver's.
 */
import { describe, expect, it } from 'vitest';
import { decodeTraceRequest } from '../src/receiver/otlp-decode';
import { TraceProcessor } from '../src/processor/trace-processor';
import { Kind, newSpanId, newTraceId, toOtlpProtobuf, type SyntheticSpan } from './support/synthetic-trace';

const service = 'orders-js';

function span(name: string, kind: number, parentSpanId: string | undefined, startUs: number, attributes: Record<string, string | number>): SyntheticSpan {
  return { service, name, kind, spanId: newSpanId(), ...(parentSpanId !== undefined ? { parentSpanId } : {}), startUs, endUs: startUs + 100, attributes };
}

describe('nested spans of one operation', () => {
  it('counts the driver span under a Knex span and under a Prisma db_query span, once each', () => {
    const root = { ...span('GET /orders/:id', Kind.SERVER, undefined, 0, { 'http.request.method': 'GET', 'http.route': '/orders/:id' }), endUs: 10_000 };
    const knex = span('first test.orders', Kind.CLIENT, root.spanId, 100, {
      'db.system.name': 'postgresql',
      'db.query.text': 'select * from orders where id = ?',
    });
    const knexDriver = span('pg.query:SELECT test', Kind.CLIENT, knex.spanId, 110, {
      'db.system.name': 'postgresql',
      'db.query.text': 'select * from orders where id = $1',
      'db.response.returned_rows': 1,
    });
    const operation = { ...span('prisma:client:operation', Kind.INTERNAL, root.spanId, 300, { method: 'findMany', model: 'Item' }), endUs: 900 };
    const prismaQuery = span('prisma:client:db_query', Kind.CLIENT, operation.spanId, 400, {
      'db.system.name': 'postgresql',
      'db.query.text': 'SELECT id FROM items WHERE order_id = $1',
    });
    const prismaDriver = span('pg.query:SELECT test', Kind.CLIENT, prismaQuery.spanId, 410, {
      'db.system.name': 'postgresql',
      'db.query.text': 'SELECT id FROM items WHERE order_id = $1',
      'db.response.returned_rows': 3,
    });
    const { spans } = decodeTraceRequest(
      toOtlpProtobuf({ traceId: newTraceId(), baseNs: 1_700_000_000_000_000_000n, spans: [root, knex, knexDriver, operation, prismaQuery, prismaDriver] }),
      'protobuf',
    );
    new TraceProcessor().process(spans);
    const attributes = spans.find((s) => s.spanId === root.spanId)!.attributes;
    expect([attributes['cost.db.queries'], attributes['cost.db.rows'], attributes['cost.db.time_ms']]).toEqual([2, 4, 0.2]);
  });
});
