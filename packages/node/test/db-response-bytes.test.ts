/**
 * `cost.db.bytes` end to end in one process: request-budget's instrumentations for pg, mysql2 and
 * postgres.js (as createInstrumentations makes them) on a real SDK with the CostSpanProcessor,
 * against the real PostgreSQL and MariaDB. The truth is computed by the database server itself,
 * in SQL, over the very rows the query returns:
 * - PostgreSQL, per DataRow message: 1 type byte + 4 length + 2 field count, and per field 4
 *   length bytes plus the value as sent: `octet_length(value::text)` in text format, the type's
 *   send function (`int4send`, `textsend`) in binary; a NULL is its 4 bytes of -1 alone.
 * - MariaDB, per row packet: 4 header bytes, then the text protocol's values (a NULL is 1 byte,
 *   a value its length-encoded length, 1 byte under 251, and its bytes in utf8mb4) or the binary
 *   protocol's header byte, NULL bitmap ((columns + 9) / 8 bytes), INT as 4 bytes and the other
 *   values length-encoded.
 *
 * The ES module loader hook is registered first, as `--import @request-budget/node/register`
 * does: postgres.js's protocol module can be patched only through it.
 */
import { context, SpanKind, trace, type Attributes } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { createRequire, register } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { concurrently } from '../../../test/support/http';
import { CostSpanProcessor } from '../src/cost-span-processor';
import { createInstrumentations } from '../src/instrumentations';
import { PgRowBytesInstrumentation } from '../src/pg-row-bytes-instrumentation';

register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new CostSpanProcessor(), new SimpleSpanProcessor({ exporter })] });
const tracer = provider.getTracer('test');
const contextManager = new AsyncLocalStorageContextManager();
const instrumentations = createInstrumentations(['pg', 'mysql2', 'postgres']);
registerInstrumentations({ instrumentations, tracerProvider: provider });

// Loaded after the instrumentations, through require, as an app under request-budget loads them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the drivers' own types are not dependencies of this package
type Any = any;
const load = createRequire(import.meta.url);
const pg = load('pg') as Any;
const mysql = load('mysql2') as Any;
const postgres = load('postgres').default as Any;

const PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
const MARIADB = { host: '127.0.0.1', port: 3306, user: 'root', database: 'test' };
const ITEMS = 'rbbytes_items';

let pgPool: Any;
let pgAdmin: Any;
let mysqlPool: Any;
let mariadbAdmin: Any;
let sql: Any;

beforeAll(async () => {
  context.setGlobalContextManager(contextManager.enable());
  pgAdmin = new pg.Client({ connectionString: PG_URL });
  await pgAdmin.connect();
  // Smaller than the requests sent at once in the in-flight cases.
  pgPool = new pg.Pool({ connectionString: PG_URL, max: 2 });
  sql = postgres(PG_URL, { max: 2, onnotice: () => {} });
  mariadbAdmin = await load('mysql2/promise').createConnection(MARIADB);
  mysqlPool = mysql.createPool({ ...MARIADB, connectionLimit: 2, multipleStatements: true });
  await mariadbAdmin.query(`CREATE TABLE IF NOT EXISTS ${ITEMS} (id INT PRIMARY KEY, name VARCHAR(64) CHARACTER SET utf8mb4 NULL, amount DECIMAL(10,2) NULL)`);
  await mariadbAdmin.query(`DELETE FROM ${ITEMS}`);
  // Every 7th name and every 5th amount NULL; names of 0 to 48 characters, some of them multibyte.
  await mariadbAdmin.query(
    `INSERT INTO ${ITEMS} (id, name, amount)
       SELECT seq, IF(seq % 7 = 0, NULL, CONCAT(REPEAT('x', seq % 45), IF(seq % 3 = 0, 'é𝄞', ''))), IF(seq % 5 = 0, NULL, seq * 1.25) FROM seq_1_to_5000`,
  );
});

afterAll(async () => {
  await mariadbAdmin?.query(`DROP TABLE IF EXISTS ${ITEMS}`);
  await Promise.all([
    pgPool?.end(),
    pgAdmin?.end(),
    sql?.end(),
    mariadbAdmin?.end(),
    new Promise((resolve) => (mysqlPool ? mysqlPool.end(resolve) : resolve(undefined))),
  ]);
  await provider.shutdown();
  context.disable();
});

/** What one request recorded: its cost attributes, and each query span's rows and bytes in order. */
interface Recorded {
  readonly rows: unknown;
  readonly bytes: unknown;
  readonly queries: readonly { readonly rows: unknown; readonly bytes: unknown }[];
}

/** Runs `fn` as one request (a SERVER root span) and returns what it recorded. */
async function request(fn: () => Promise<unknown>): Promise<Recorded> {
  const root = tracer.startSpan('GET /bytes', { kind: SpanKind.SERVER });
  await context.with(trace.setSpan(context.active(), root), fn);
  root.end();
  const attributes: Attributes = (root as unknown as ReadableSpan).attributes;
  const traceId = root.spanContext().traceId;
  const queries = exporter
    .getFinishedSpans()
    .filter((s) => s.spanContext().traceId === traceId && s.attributes['db.response.returned_rows'] !== undefined)
    .sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1])
    .map((s) => ({ rows: s.attributes['db.response.returned_rows'], bytes: s.attributes['request_budget.db.response_bytes'] }));
  return { rows: attributes['cost.db.rows'], bytes: attributes['cost.db.bytes'], queries };
}

/** `fn(0)`..`fn(n - 1)`, each after the last (the truth's connection runs one query at a time). */
async function oneAfterAnother<T>(n: number, fn: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < n; i += 1) results.push(await fn(i));
  return results;
}

/** A query's DataRow bytes, computed by PostgreSQL over the query's own rows, text format. */
async function pgTextBytes(query: string, columns: readonly string[], values: unknown[] = []): Promise<number> {
  const fields = columns.map((c) => `coalesce(octet_length(q.${c}::text), 0)`).join(' + ');
  const { rows } = await pgAdmin.query(`SELECT coalesce(sum(${7 + 4 * columns.length} + ${fields}), 0)::int AS bytes FROM (${query}) AS q`, values);
  return rows[0].bytes;
}

/** The same in binary format: each field's bytes as the type's send function makes them. */
async function pgBinaryBytes(query: string, sends: Record<string, string>, values: unknown[] = []): Promise<number> {
  const columns = Object.entries(sends);
  const fields = columns.map(([c, send]) => `coalesce(octet_length(${send}(q.${c})), 0)`).join(' + ');
  const { rows } = await pgAdmin.query(`SELECT coalesce(sum(${7 + 4 * columns.length} + ${fields}), 0)::int AS bytes FROM (${query}) AS q`, values);
  return rows[0].bytes;
}

/** MariaDB's length-encoded size of a value of `length` bytes, as SQL over that expression. */
const lenenc = (length: string) => `(CASE WHEN ${length} < 251 THEN 1 WHEN ${length} < 65536 THEN 3 WHEN ${length} < 16777216 THEN 4 ELSE 9 END + ${length})`;
const utf8Length = (column: string) => `LENGTH(CONVERT(q.${column} USING utf8mb4))`;

/** A text-protocol query's row packets, computed by MariaDB over the query's own rows. */
async function mysqlTextBytes(query: string, columns: readonly string[], values: unknown[] = []): Promise<number> {
  const fields = columns.map((c) => `IF(q.${c} IS NULL, 1, ${lenenc(utf8Length(c))})`).join(' + ');
  const [rows] = await mariadbAdmin.query(`SELECT CAST(COALESCE(SUM(4 + ${fields}), 0) AS SIGNED) AS bytes FROM (${query}) AS q`, values);
  return Number(rows[0].bytes);
}

/** The binary protocol's row packets (`execute`) of a query over id INT, name VARCHAR and amount DECIMAL. */
async function mysqlBinaryBytes(query: string, values: unknown[] = []): Promise<number> {
  const fields = `4 + IF(q.name IS NULL, 0, ${lenenc(utf8Length('name'))}) + IF(q.amount IS NULL, 0, ${lenenc(utf8Length('amount'))})`;
  const [rows] = await mariadbAdmin.query(
    `SELECT CAST(COALESCE(SUM(4 + 1 + FLOOR((3 + 9) / 8) + ${fields}), 0) AS SIGNED) AS bytes FROM (${query}) AS q`,
    values,
  );
  return Number(rows[0].bytes);
}

const PG_NONE = 'SELECT g AS id, md5(g::text) AS hash FROM generate_series(1, 0) AS g';
const PG_ONE = `SELECT 42 AS id, 'é𝄞 text' AS label, NULL::text AS missing, 12.50::numeric AS amount`;
const PG_MANY = `SELECT g AS id, CASE WHEN g % 7 = 0 THEN NULL ELSE repeat('x', g % 45) || CASE WHEN g % 3 = 0 THEN 'é𝄞' ELSE '' END END AS label, g * 1.25 AS amount
                   FROM generate_series(1, 5000) AS g`;
const PG_PARAMETERISED = 'SELECT g AS id, md5(g::text) AS hash FROM generate_series(1, $1::int) AS g';

describe('pg', () => {
  it('0, 1 and 5,000 rows (NULLs, multibyte text), plain and parameterised: each query and its request carry the bytes PostgreSQL computes', async () => {
    const truths = [
      await pgTextBytes(PG_NONE, ['id', 'hash']),
      await pgTextBytes(PG_ONE, ['id', 'label', 'missing', 'amount']),
      await pgTextBytes(PG_MANY, ['id', 'label', 'amount']),
      await pgTextBytes(PG_PARAMETERISED, ['id', 'hash'], [37]),
    ];
    const recorded = await request(async () => {
      await pgPool.query(PG_NONE);
      await pgPool.query(PG_ONE);
      await pgPool.query(PG_MANY);
      await pgPool.query(PG_PARAMETERISED, [37]);
    });
    expect(truths[0]).toBe(0);
    expect(recorded.queries).toEqual([
      { rows: 0, bytes: truths[0] },
      { rows: 1, bytes: truths[1] },
      { rows: 5000, bytes: truths[2] },
      { rows: 37, bytes: truths[3] },
    ]);
    expect([recorded.rows, recorded.bytes]).toEqual([5038, truths[0] + truths[1] + truths[2] + truths[3]]);
  });

  it('binary results, and a multi-statement query (one result per statement, a statement without rows among them)', async () => {
    const binary = await pgBinaryBytes(PG_PARAMETERISED, { id: 'int4send', hash: 'textsend' }, [120]);
    const first = await pgTextBytes(`SELECT 1 AS a, 'é' AS b`, ['a', 'b']);
    const second = await pgTextBytes('SELECT g AS c FROM generate_series(1, 400) AS g', ['c']);
    const recorded = await request(async () => {
      await pgPool.query({ text: PG_PARAMETERISED, values: [120], binary: true });
      await pgPool.query(`SELECT 1 AS a, 'é' AS b; SET LOCAL statement_timeout = 0; SELECT g AS c FROM generate_series(1, 400) AS g`);
    });
    // Binary int4 is 4 bytes where its text would be 1 to 3: the two formats differ.
    expect(binary).not.toBe(await pgTextBytes(PG_PARAMETERISED, ['id', 'hash'], [120]));
    expect(recorded.queries).toEqual([
      { rows: 120, bytes: binary },
      { rows: 401, bytes: first + second },
    ]);
    expect(recorded.bytes).toBe(binary + first + second);
  });

  it('8 requests in flight on a pool of 2: each request exactly its own bytes', async () => {
    const rowsOf = (i: number) => 150 * (i + 1);
    const query = (i: number) => `SELECT g AS id, repeat(chr(97 + ${i}), ${i * 3}) AS filler FROM generate_series(1, ${rowsOf(i)}) AS g`;
    const truths = await oneAfterAnother(8, (i) => pgTextBytes(query(i), ['id', 'filler']));
    const recorded = await concurrently(8, (i) =>
      request(async () => {
        await pgPool.query(query(i));
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
        await pgPool.query(PG_ONE);
      }),
    );
    const one = await pgTextBytes(PG_ONE, ['id', 'label', 'missing', 'amount']);
    expect(recorded.map((r) => [r.rows, r.bytes])).toEqual(truths.map((truth, i) => [rowsOf(i) + 1, truth + one]));
  });

  it('a request whose rows went unmeasured (no DataRow layer) has no cost.db.bytes: never a lower bound', async () => {
    const layer = instrumentations.find((i) => i instanceof PgRowBytesInstrumentation)!;
    layer.disable();
    try {
      const recorded = await request(async () => {
        await pgPool.query(PG_NONE);
        await pgPool.query(PG_PARAMETERISED, [3]);
      });
      // The query without rows still weighs 0; the one with rows cannot be weighed.
      expect(recorded).toEqual({
        rows: 3,
        bytes: undefined,
        queries: [
          { rows: 0, bytes: 0 },
          { rows: 3, bytes: undefined },
        ],
      });
    } finally {
      layer.enable();
    }
    expect((await request(() => pgPool.query(PG_PARAMETERISED, [3]))).bytes).toBe(await pgTextBytes(PG_PARAMETERISED, ['id', 'hash'], [3]));
  });
});

const MY_COLUMNS = ['id', 'name', 'amount'];
const MY_RANGE = `SELECT id, name, amount FROM ${ITEMS} WHERE id <= ? ORDER BY id`;

describe('mysql2 on MariaDB', () => {
  it('text protocol (query) and binary protocol (execute): 0, 1 and 5,000 rows with NULLs and multibyte names', async () => {
    const text = await Promise.all([0, 1, 5000].map((n) => mysqlTextBytes(MY_RANGE, MY_COLUMNS, [n])));
    const binary = await Promise.all([0, 1, 5000].map((n) => mysqlBinaryBytes(MY_RANGE, [n])));
    const promised = mysqlPool.promise();
    const recorded = await request(async () => {
      for (const n of [0, 1, 5000]) await promised.query(MY_RANGE, [n]);
      for (const n of [0, 1, 5000]) await promised.execute(MY_RANGE, [n]);
    });
    expect(recorded.queries).toEqual([
      { rows: 0, bytes: 0 },
      { rows: 1, bytes: text[1] },
      { rows: 5000, bytes: text[2] },
      { rows: 0, bytes: 0 },
      { rows: 1, bytes: binary[1] },
      { rows: 5000, bytes: binary[2] },
    ]);
    expect([text[0], binary[0]]).toEqual([0, 0]);
    expect([recorded.rows, recorded.bytes]).toEqual([10_002, text[1] + text[2] + binary[1] + binary[2]]);
  });

  it('streamed query and execute: every row delivered, with its bytes', async () => {
    const text = await mysqlTextBytes(MY_RANGE, MY_COLUMNS, [2500]);
    const binary = await mysqlBinaryBytes(MY_RANGE, [1200]);
    const drain = (stream: Any) =>
      new Promise((resolve, reject) =>
        stream
          .on('data', () => {})
          .on('end', resolve)
          .on('error', reject),
      );
    const recorded = await request(async () => {
      const connection = await new Promise<Any>((resolve, reject) => mysqlPool.getConnection((error: Error, c: Any) => (error ? reject(error) : resolve(c))));
      try {
        await drain(connection.query(MY_RANGE, [2500]).stream());
        await drain(connection.execute(MY_RANGE, [1200]).stream());
      } finally {
        connection.release();
      }
    });
    expect(recorded.queries).toEqual([
      { rows: 2500, bytes: text },
      { rows: 1200, bytes: binary },
    ]);
    expect(recorded.bytes).toBe(text + binary);
  });

  it('a multi-statement query: the rows of each result set, an UPDATE among them weighing nothing', async () => {
    const first = await mysqlTextBytes(MY_RANGE, MY_COLUMNS, [40]);
    const second = await mysqlTextBytes(`SELECT name FROM ${ITEMS} WHERE id BETWEEN 100 AND 160`, ['name']);
    const recorded = await request(() =>
      mysqlPool.promise().query(`${MY_RANGE}; UPDATE ${ITEMS} SET amount = amount WHERE id = 1; SELECT name FROM ${ITEMS} WHERE id BETWEEN 100 AND 160`, [40]),
    );
    expect(recorded.queries).toEqual([{ rows: 101, bytes: first + second }]);
  });

  it('8 requests in flight on a pool of 2: each request exactly its own bytes', async () => {
    const limitOf = (i: number) => 300 * (i + 1);
    const text = await Promise.all(Array.from({ length: 8 }, (_, i) => mysqlTextBytes(MY_RANGE, MY_COLUMNS, [limitOf(i)])));
    const binary = await mysqlBinaryBytes(MY_RANGE, [7]);
    const promised = mysqlPool.promise();
    const recorded = await concurrently(8, (i) =>
      request(async () => {
        await promised.query(MY_RANGE, [limitOf(i)]);
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
        await promised.execute(MY_RANGE, [7]);
      }),
    );
    expect(recorded.map((r) => [r.rows, r.bytes])).toEqual(text.map((truth, i) => [limitOf(i) + 7, truth + binary]));
  });
});

describe('postgres.js', () => {
  it('0, 1 and 5,000 rows, a multi-statement query, a cursor read in batches and forEach: the bytes PostgreSQL computes', async () => {
    const truths = {
      none: await pgTextBytes(PG_NONE, ['id', 'hash']),
      one: await pgTextBytes(PG_ONE, ['id', 'label', 'missing', 'amount']),
      many: await pgTextBytes(PG_MANY, ['id', 'label', 'amount']),
      parameterised: await pgTextBytes(PG_PARAMETERISED, ['id', 'hash'], [1050]),
      multi: (await pgTextBytes(`SELECT 1 AS a, 'é' AS b`, ['a', 'b'])) + (await pgTextBytes('SELECT g AS c FROM generate_series(1, 400) AS g', ['c'])),
    };
    const recorded = await request(async () => {
      await sql.unsafe(PG_NONE);
      await sql.unsafe(PG_ONE);
      await sql.unsafe(PG_MANY);
      await sql`SELECT g AS id, md5(g::text) AS hash FROM generate_series(1, ${1050}::int) AS g`;
      await sql.unsafe(`SELECT 1 AS a, 'é' AS b; SELECT g AS c FROM generate_series(1, 400) AS g`);
      await sql`SELECT g AS id, md5(g::text) AS hash FROM generate_series(1, ${1050}::int) AS g`.cursor(100, () => {});
      await sql`SELECT g AS id, md5(g::text) AS hash FROM generate_series(1, ${1050}::int) AS g`.forEach(() => {});
    });
    expect(truths.none).toBe(0);
    expect(recorded.queries).toEqual([
      { rows: 0, bytes: 0 },
      { rows: 1, bytes: truths.one },
      { rows: 5000, bytes: truths.many },
      { rows: 1050, bytes: truths.parameterised },
      { rows: 401, bytes: truths.multi },
      { rows: 1050, bytes: truths.parameterised },
      { rows: 1050, bytes: truths.parameterised },
    ]);
    expect(recorded.bytes).toBe(truths.one + truths.many + 3 * truths.parameterised + truths.multi);
  });

  it('sql.batch() (its rows arrive for each of its statements) and a transaction (BEGIN, SAVEPOINT and COMMIT weigh nothing)', async () => {
    const batch = (await pgTextBytes('SELECT 1::int AS a', ['a'])) + (await pgTextBytes(PG_PARAMETERISED, ['id', 'hash'], [30]));
    const inTransaction = await pgTextBytes(PG_PARAMETERISED, ['id', 'hash'], [12]);
    const recorded = await request(async () => {
      await sql.batch([sql`SELECT ${1}::int AS a`, sql`SELECT g AS id, md5(g::text) AS hash FROM generate_series(1, ${30}::int) AS g`]);
      await sql.begin(async (tx: Any) => {
        await tx.savepoint((sp: Any) => sp`SELECT g AS id, md5(g::text) AS hash FROM generate_series(1, ${12}::int) AS g`);
      });
    });
    expect(recorded.queries).toEqual([
      { rows: 31, bytes: batch },
      { rows: 0, bytes: 0 },
      { rows: 0, bytes: 0 },
      { rows: 12, bytes: inTransaction },
      { rows: 0, bytes: 0 },
    ]);
    expect(recorded.bytes).toBe(batch + inTransaction);
  });

  it('8 requests in flight on 2 connections, queries pipelined on each: each request exactly its own bytes', async () => {
    const rowsOf = (i: number) => 150 * (i + 1);
    const truths = await oneAfterAnother(8, (i) => pgTextBytes(PG_PARAMETERISED, ['id', 'hash'], [rowsOf(i)]));
    const recorded = await concurrently(8, (i) =>
      request(async () => {
        await Promise.all([sql`SELECT g AS id, md5(g::text) AS hash FROM generate_series(1, ${rowsOf(i)}::int) AS g`, sql.unsafe(PG_ONE)]);
      }),
    );
    const one = await pgTextBytes(PG_ONE, ['id', 'label', 'missing', 'amount']);
    expect(recorded.map((r) => [r.rows, r.bytes])).toEqual(truths.map((truth, i) => [rowsOf(i) + 1, truth + one]));
  });
});
