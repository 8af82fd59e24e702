/**
 * The postgres.js instrumentation on a real SDK (in-memory exporter) against the real
 * PostgreSQL: the exact span of each way postgres.js runs a query, its parent under pool
 * contention, and rows held against pg_stat_statements.
 */
import { context, SpanKind, SpanStatusCode, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { pgTruth, type PgTruth } from '../../../test/support/db-truth';
import { describeBatchResult, errorAttributes, operationOf, spanNameOf } from '../src/instrumentations/postgres-js-attributes';
import { PostgresJsInstrumentation } from '../src/instrumentations/postgres-js-instrumentation';

// The instrumentation patches postgres.js when it is loaded through require (here, require of
// its ES module build), as `node --require @request-budget/node/register` does for an app.
const instrumentation = new PostgresJsInstrumentation();
const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
instrumentation.setTracerProvider(provider);
const tracer = provider.getTracer('test');
const contextManager = new AsyncLocalStorageContextManager();
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- postgres.js's own types are not a dependency of this package
const postgres = createRequire(import.meta.url)('postgres').default as (url: string, options?: object) => any;

const TABLE = 'rbpgjs_unit_items';
let truth: PgTruth;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let sql: any;

beforeAll(async () => {
  context.setGlobalContextManager(contextManager.enable());
  // A role of this file's own, so the e2e file's pg_stat_statements deltas never see these.
  truth = await pgTruth('rb_postgresjs_unit');
  sql = postgres(truth.url, { max: 2, onnotice: () => {} });
  await sql.unsafe(`CREATE TABLE IF NOT EXISTS ${TABLE} (id int PRIMARY KEY, name text)`);
  await sql.unsafe(`TRUNCATE ${TABLE}`);
});
afterAll(async () => {
  await sql?.unsafe(`DROP TABLE IF EXISTS ${TABLE}`);
  await sql?.end();
  await truth?.close();
  await provider.shutdown();
  context.disable();
});
beforeEach(() => exporter.reset());

function withParent<T>(name: string, fn: (parent: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, async (parent) => {
    try {
      return await fn(parent);
    } finally {
      parent.end();
    }
  });
}

/** The query spans finished so far (the test's own parent spans left out). */
function querySpans(): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.instrumentationScope.name === '@request-budget/instrumentation-postgres-js');
}

function only(): ReadableSpan {
  const spans = querySpans();
  expect(spans).toHaveLength(1);
  return spans[0]!;
}

const server = { 'server.address': '127.0.0.1', 'server.port': 5432 };
const select = (text: string, rows: number) => ({
  'db.system.name': 'postgresql',
  'db.namespace': 'test',
  'db.query.text': text,
  'db.operation.name': 'SELECT',
  ...server,
  'db.response.returned_rows': rows,
});

describe('one span per query, with the stable database conventions', () => {
  it('a parameterised query: CLIENT span named "SELECT test", child of the caller, exact attributes', async () => {
    const parent = await withParent('parent', async (span) => {
      const rows = await sql`SELECT g AS id FROM generate_series(1, ${3}::int) AS g`;
      expect(rows).toHaveLength(3);
      return span;
    });
    const span = only();
    expect(span.name).toBe('SELECT test');
    expect(span.kind).toBe(SpanKind.CLIENT);
    expect(span.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.attributes).toEqual(select('SELECT g AS id FROM generate_series(1, $1::int) AS g', 3));
  });

  it('never records parameter values', async () => {
    await sql`SELECT ${'hunter2'}::text AS secret, ${'4111-1111'}::text AS card`;
    const values = Object.values(only().attributes).map(String).join(' ');
    expect(values).not.toContain('hunter2');
    expect(values).not.toContain('4111');
    expect(only().attributes['db.query.text']).toBe('SELECT $1::text AS secret, $2::text AS card');
  });

  it('a failing query: error status, SQLSTATE as error.type and db.response.status_code, no rows', async () => {
    await expect(sql`SELECT * FROM rbpgjs_table_that_does_not_exist`).rejects.toThrow(/does not exist/);
    const span = only();
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'relation "rbpgjs_table_that_does_not_exist" does not exist' });
    expect(span.attributes).toEqual({
      'db.system.name': 'postgresql',
      'db.namespace': 'test',
      'db.query.text': 'SELECT * FROM rbpgjs_table_that_does_not_exist',
      'db.operation.name': 'SELECT',
      ...server,
      'db.response.status_code': '42P01',
      'error.type': '42P01',
    });
  });

  it('rows are returned rows: none for INSERT/UPDATE without RETURNING, n with it', async () => {
    await sql`INSERT INTO ${sql(TABLE)} SELECT g, 'n' || g FROM generate_series(1, 4) AS g`;
    await sql`UPDATE ${sql(TABLE)} SET name = name || '!' WHERE id <= ${2}`;
    await sql`UPDATE ${sql(TABLE)} SET name = name || '?' WHERE id > ${1} RETURNING id`;
    await sql`DELETE FROM ${sql(TABLE)}`;
    expect(querySpans().map((s) => [s.name, s.attributes['db.response.returned_rows']])).toEqual([
      ['INSERT test', 0],
      ['UPDATE test', 0],
      ['UPDATE test', 3],
      ['DELETE test', 0],
    ]);
  });

  it('.simple(), .values(), .execute() and a reserved connection', async () => {
    await sql`SELECT 1 AS a`.simple();
    await sql.unsafe('SELECT $1::int AS a', [5]).values();
    await sql`SELECT 2 AS b`.execute();
    const reserved = await sql.reserve();
    await reserved`SELECT 3 AS c`;
    reserved.release();
    expect(querySpans().map((s) => [s.attributes['db.query.text'], s.attributes['db.response.returned_rows']])).toEqual([
      ['SELECT 1 AS a', 1],
      ['SELECT $1::int AS a', 1],
      ['SELECT 2 AS b', 1],
      ['SELECT 3 AS c', 1],
    ]);
  });

  it('sql.file(): the text read from the file, known only once sent', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'rbpgjs-')), 'query.sql');
    writeFileSync(file, '-- two rows\nSELECT g FROM generate_series(1, 2) AS g\n');
    await sql.file(file);
    const span = only();
    expect(span.name).toBe('SELECT test');
    expect(span.attributes).toEqual(select('-- two rows\nSELECT g FROM generate_series(1, 2) AS g\n', 2));
  });

  it('a multi-statement simple query: one span, rows of every statement', async () => {
    await sql.unsafe('SELECT 1; SELECT g FROM generate_series(1, 2) AS g');
    expect(only().attributes['db.response.returned_rows']).toBe(3);
  });

  it('sql.batch(): one batch span with every statement and the summed rows', async () => {
    const results = await sql.batch([sql`SELECT ${1}::int AS a`, sql`SELECT g FROM generate_series(1, ${3}::int) AS g`]);
    expect(results.map((r: unknown[]) => r.length)).toEqual([1, 3]);
    const span = only();
    expect(span.name).toBe('BATCH SELECT test');
    expect(span.attributes).toMatchObject({
      'db.query.text': 'SELECT $1::int AS a; SELECT g FROM generate_series(1, $1::int) AS g',
      'db.operation.name': 'BATCH SELECT',
      'db.operation.batch.size': 2,
      'db.response.returned_rows': 4,
    });
  });

  it('an empty query resolves as it does uninstrumented, with no span', async () => {
    await expect(sql.unsafe('')).resolves.toBeDefined();
    expect(querySpans()).toEqual([]);
  });
});

describe('cursors and forEach: one query, rows summed over batches', () => {
  it('.cursor(n, fn): 10 rows in batches of 3', async () => {
    const batches: number[] = [];
    await sql`SELECT g FROM generate_series(1, 10) AS g`.cursor(3, (rows: unknown[]) => {
      batches.push(rows.length);
    });
    expect(batches).toEqual([3, 3, 3, 1]);
    expect(only().attributes['db.response.returned_rows']).toBe(10);
  });

  it('for await of .cursor(n): 7 rows in batches of 3', async () => {
    const batches: number[] = [];
    for await (const rows of sql`SELECT g FROM generate_series(1, 7) AS g`.cursor(3)) batches.push(rows.length);
    expect(batches).toEqual([3, 3, 1]);
    expect(only().attributes['db.response.returned_rows']).toBe(7);
  });

  it('a cursor left after its first batch counts the rows it fetched', async () => {
    for await (const rows of sql`SELECT g FROM generate_series(1, 100) AS g`.cursor(10)) {
      expect(rows).toHaveLength(10);
      break;
    }
    await vi.waitFor(() => expect(querySpans()).toHaveLength(1));
    expect(only().attributes['db.response.returned_rows']).toBe(10);
  });

  it('.forEach(): rows counted by the server although none are kept', async () => {
    let seen = 0;
    const result = await sql`SELECT g FROM generate_series(1, 5) AS g`.forEach(() => (seen += 1));
    expect([seen, result.length]).toEqual([5, 0]);
    expect(only().attributes['db.response.returned_rows']).toBe(5);
  });

  it('rows agree with the server: pg_stat_statements for forEach, count(*) for a cursor', async () => {
    const forEach = await truth.during(() => sql`SELECT g FROM generate_series(1, 9) AS g`.forEach(() => {}));
    expect([forEach.statements, forEach.rows]).toEqual([1, 9]);
    const cursorText = 'SELECT g FROM generate_series(1, 25) AS g';
    const cursor = await truth.during(() => sql.unsafe(cursorText).cursor(4, () => {}));
    // One execution. Its rows: before PostgreSQL 16, pg_stat_statements keeps only the last
    // fetch's of a portal read in batches, so the server's count comes from count(*).
    expect(cursor.statements).toBe(1);
    const [{ count }] = await sql.unsafe(`SELECT count(*)::int AS count FROM (${cursorText}) AS q`);
    expect(count).toBe(25);
    expect(querySpans().map((s) => s.attributes['db.response.returned_rows'])).toEqual([9, 25, 1]);
  });
});

describe('transactions', () => {
  it('sql.begin(): BEGIN, the queries, a savepoint and COMMIT, each a span under the caller', async () => {
    const parent = await withParent('parent', async (span) => {
      await sql.begin(async (tx: typeof sql) => {
        await tx`SELECT 1 AS one`;
        await tx.savepoint(async (sp: typeof sql) => sp`SELECT 2 AS two`);
      });
      return span;
    });
    const spans = querySpans();
    // postgres.js releases a savepoint implicitly (at COMMIT), so there is no RELEASE statement.
    expect(spans.map((s) => [s.name, s.attributes['db.query.text'], s.attributes['db.response.returned_rows']])).toEqual([
      ['BEGIN test', 'begin ', 0],
      ['SELECT test', 'SELECT 1 AS one', 1],
      ['SAVEPOINT test', 'savepoint "s0"', 0],
      ['SELECT test', 'SELECT 2 AS two', 1],
      ['COMMIT test', 'commit', 0],
    ]);
    expect(spans.every((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId)).toBe(true);
  });
});

describe('context under pool contention', () => {
  it('each of 24 queries queued on 2 connections is the child of the span that started it', async () => {
    const parents = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        withParent(`parent-${i}`, async (span) => {
          await sql`SELECT ${i}::int AS i, pg_sleep(0.002)`;
          return span;
        }),
      ),
    );
    const spans = querySpans();
    expect(spans).toHaveLength(24);
    const parentOf = new Map(spans.map((s) => [s.parentSpanContext?.spanId, s]));
    expect(parents.every((p) => parentOf.has(p.spanContext().spanId))).toBe(true);
  });

  it('a query started outside any span has no parent, even when a request frees its connection', async () => {
    const background = sql`SELECT 'background' AS b`;
    await withParent('request', async () => {
      await Promise.all([sql`SELECT pg_sleep(0.01)`, sql`SELECT pg_sleep(0.01)`]);
    });
    await background;
    const span = querySpans().find((s) => s.attributes['db.query.text'] === "SELECT 'background' AS b")!;
    expect(span.parentSpanContext).toBeUndefined();
  });
});

describe('configuration and guards', () => {
  it('requireParentSpan: no span for a query outside any span', async () => {
    instrumentation.setConfig({ requireParentSpan: true });
    try {
      await sql`SELECT 1 AS outside`;
      await withParent('parent', () => sql`SELECT 1 AS inside`);
    } finally {
      instrumentation.setConfig({});
    }
    expect(querySpans().map((s) => s.attributes['db.query.text'])).toEqual(['SELECT 1 AS inside']);
  });

  it('a throwing responseHook is reported once and the span still ends', async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    instrumentation.setConfig({
      responseHook: () => {
        throw new Error('hook bug');
      },
    });
    let lines: string[];
    try {
      await sql`SELECT 1 AS a`;
      await sql`SELECT 1 AS a`;
    } finally {
      instrumentation.setConfig({});
      lines = stderr.mock.calls.map(([line]) => String(line)).filter((line) => line.includes('responseHook'));
      stderr.mockRestore();
    }
    expect(querySpans()).toHaveLength(2);
    expect(lines).toEqual(['request-budget: the postgres.js responseHook threw (reported once): hook bug\n']);
  });

  it('disable() stops the spans and enable() brings them back', async () => {
    instrumentation.disable();
    try {
      await sql`SELECT 1 AS disabled`;
      await sql`SELECT g FROM generate_series(1, 3) AS g`.cursor(2, () => {});
    } finally {
      instrumentation.enable();
    }
    await sql`SELECT 1 AS enabled`;
    await sql`SELECT g FROM generate_series(1, 5) AS g`.cursor(2, () => {});
    // Patched again: the cursor's batches (2, 2, 1) are summed.
    expect(querySpans().map((s) => [s.attributes['db.query.text'], s.attributes['db.response.returned_rows']])).toEqual([
      ['SELECT 1 AS enabled', 1],
      ['SELECT g FROM generate_series(1, 5) AS g', 5],
    ]);
  });
});

describe('translation to the conventions (pure)', () => {
  it('operation: the first keyword after leading comments, upper-cased', () => {
    expect(operationOf('  /* app:42 */ -- note\n with x AS (SELECT 1) select * from x')).toBe('WITH');
    expect(operationOf('select 1')).toBe('SELECT');
    expect(operationOf('(select 1)')).toBeUndefined();
    expect(operationOf(null)).toBeUndefined();
  });

  it('span name: never the database name alone (a database may be called "connect")', () => {
    expect([spanNameOf('SELECT', 'test'), spanNameOf('SELECT', undefined), spanNameOf(undefined, 'connect')]).toEqual(['SELECT test', 'SELECT', 'postgresql']);
  });

  it('error.type: the SQLSTATE of a server error, else the driver error code, else the error name', () => {
    const serverError = Object.assign(new Error('deadlock detected'), { name: 'PostgresError', code: '40P01' });
    expect(errorAttributes(serverError)).toEqual({ 'db.response.status_code': '40P01', 'error.type': '40P01' });
    expect(errorAttributes(Object.assign(new Error('closed'), { code: 'CONNECTION_CLOSED' }))).toEqual({ 'error.type': 'CONNECTION_CLOSED' });
    expect(errorAttributes(new TypeError('bad'))).toEqual({ 'error.type': 'TypeError' });
    expect(errorAttributes('a string')).toEqual({ 'error.type': '_OTHER' });
  });

  it('a batch recognised by its result alone (postgres.js loaded unpatched)', () => {
    const result = (command: string, rows: number) =>
      Object.assign(
        Array.from({ length: rows }, () => ({})),
        { command, count: rows },
      );
    expect(describeBatchResult([result('SELECT', 1), result('SELECT', 2)])).toEqual({ text: undefined, operation: 'BATCH SELECT', batchSize: 2 });
    expect(describeBatchResult([result('SELECT', 1), result('INSERT', 0)])).toEqual({ text: undefined, operation: undefined, batchSize: 2 });
    expect(describeBatchResult(result('SELECT', 1))).toBeUndefined();
  });
});
