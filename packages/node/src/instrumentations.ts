/**
 * The auto-instrumentations request-budget installs, configured with the hooks the cost record
 * needs: rows returned for pg and mysql2 with their wire bytes, timeout detection for outgoing HTTP calls. Each one
 * only patches its library when the app loads it, so listing a library the app does not use
 * costs nothing.
 */
import type { Span } from '@opentelemetry/api';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { KoaInstrumentation, KoaLayerType } from '@opentelemetry/instrumentation-koa';
import { MongoDBInstrumentation } from '@opentelemetry/instrumentation-mongodb';
import { AmqplibInstrumentation } from '@opentelemetry/instrumentation-amqplib';
import { MySQL2Instrumentation } from '@opentelemetry/instrumentation-mysql2';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { RedisInstrumentation } from '@opentelemetry/instrumentation-redis';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { DB_RESPONSE_BYTES, DB_RESPONSE_RETURNED_ROWS } from '@request-budget/core';
import { BluebirdContextInstrumentation } from './bluebird-context-instrumentation';
import { ExpressRouteInstrumentation } from './express-route-instrumentation';
import { createFastifyInstrumentation } from './fastify-instrumentation';
import { KoaRouteInstrumentation } from './koa-route-instrumentation';
import { MysqlCallbackContextInstrumentation } from './mysql-callback-context-instrumentation';
import { MysqlRowBytesInstrumentation, rowSetBytes } from './mysql-row-bytes-instrumentation';
import { MysqlStreamInstrumentation, streamedRowBytes, streamedRowCount } from './mysql-stream-instrumentation';
import { PgRowBytesInstrumentation, pgRowBytes } from './pg-row-bytes-instrumentation';
import { PoolContextInstrumentation } from './pool-context-instrumentation';
import { PostgresJsInstrumentation } from './instrumentations/postgres-js-instrumentation';
import { RedisTransactionInstrumentation } from './redis-transaction-instrumentation';
import { BullMqInstrumentation } from './jobs/bullmq-instrumentation';
import { AmqplibJobInstrumentation, amqplibPublishHook } from './jobs/amqplib-jobs';
import { PgBossInstrumentation } from './jobs/pg-boss-instrumentation';
import { applyFrameworkRoute } from './route-naming';
import { HttpClientTimeoutInstrumentation } from './http-client-timeouts';

/** Names accepted in OTEL_NODE_ENABLED_INSTRUMENTATIONS / OTEL_NODE_DISABLED_INSTRUMENTATIONS. */
export const INSTRUMENTATION_NAMES = [
  'http',
  'express',
  'fastify',
  'koa',
  'pg',
  'postgres',
  'mysql2',
  'ioredis',
  'redis',
  'undici',
  'mongodb',
  'bullmq',
  'amqplib',
  'pg-boss',
] as const;
export type InstrumentationName = (typeof INSTRUMENTATION_NAMES)[number];

/** Settings the instrumentations are created with (from the resolved configuration). */
export interface InstrumentationSettings {
  /** Keep express's per-layer spans (middleware, router, handler). */
  readonly expressLayerSpans: boolean;
  /** Keep @fastify/otel's span per hook and per route handler. */
  readonly fastifyHookSpans: boolean;
  /** Keep instrumentation-koa's span per middleware and router layer. */
  readonly koaLayerSpans: boolean;
  /** instrumentation-pg is installed: it rebinds pool callbacks of callers that have a span. */
  readonly pgInstrumented: boolean;
  /** Judges outgoing calls timed or untimed; gives the http and undici instrumentations their hooks. */
  readonly clientTimeouts: HttpClientTimeoutInstrumentation;
}

const FACTORIES: Record<InstrumentationName, (settings: InstrumentationSettings) => Instrumentation> = {
  http: (settings) =>
    new HttpInstrumentation({
      ...settings.clientTimeouts.httpHooks(),
      // The route from express's req.route when the express instrumentation could not patch it.
      applyCustomAttributesOnSpan: applyFrameworkRoute,
    }),
  // A span per middleware and handler costs every request and adds little beside the server span:
  // by default request-budget's own route naming gives the route template (http.route), also
  // under mounted routers of express imported from an ES module, which instrumentation-express
  // misses; no wrapper per layer (bench/route-cost-micro.cjs). Layer spans on: instrumentation-express.
  express: (settings) => (settings.expressLayerSpans ? new ExpressInstrumentation() : new ExpressRouteInstrumentation()),
  // @fastify/otel; its span per hook and handler only when asked for (see fastify-instrumentation.ts).
  fastify: (settings) => createFastifyInstrumentation(settings.fastifyHookSpans),
  // The route comes from KoaRouteInstrumentation either way; layer spans only when asked for.
  koa: (settings) => new KoaInstrumentation(settings.koaLayerSpans ? {} : { ignoreLayersType: [KoaLayerType.MIDDLEWARE, KoaLayerType.ROUTER] }),
  pg: () => new PgInstrumentation({ responseHook: pgResponseHook }),
  // postgres.js (`postgres` 4.x), which has no upstream instrumentation; it sets the rows itself.
  postgres: () => new PostgresJsInstrumentation(),
  mysql2: () => new MySQL2Instrumentation({ responseHook: mysql2ResponseHook }),
  ioredis: () => new IORedisInstrumentation(),
  // node-redis (`redis` and `@redis/client`), current majors.
  redis: () => new RedisInstrumentation(),
  undici: (settings) => new UndiciInstrumentation(settings.clientTimeouts.undiciHooks()),
  mongodb: () => new MongoDBInstrumentation(),
  // BullMQ: each processed job a root of its own, each add an enqueue (jobs/bullmq-instrumentation.ts).
  bullmq: () => new BullMqInstrumentation(),
  // RabbitMQ: each consumed message a job root, each publish an enqueue (jobs/amqplib-jobs.ts).
  amqplib: () => new AmqplibInstrumentation({ publishHook: amqplibPublishHook }),
  // pg-boss: each handler call a job root, pg-boss's own bookkeeping set aside.
  'pg-boss': () => new PgBossInstrumentation(),
};

/**
 * Creates the named instrumentations, in the order given, plus the pool-context fix whenever a
 * pooled database driver is instrumented (without it, queries under pool contention can be
 * attributed to the wrong request), and the Koa route bridge with Koa.
 */
export function createInstrumentations(
  names: readonly InstrumentationName[],
  options: { expressLayerSpans?: boolean; fastifyHookSpans?: boolean; koaLayerSpans?: boolean; maxClientTimeoutMs?: number } = {},
): Instrumentation[] {
  const settings: InstrumentationSettings = {
    expressLayerSpans: options.expressLayerSpans ?? false,
    fastifyHookSpans: options.fastifyHookSpans ?? false,
    koaLayerSpans: options.koaLayerSpans ?? false,
    pgInstrumented: names.includes('pg'),
    // Enabled (it patches axios, got and undici) only when a client instrumentation uses it.
    clientTimeouts: new HttpClientTimeoutInstrumentation({
      enabled: names.includes('http') || names.includes('undici'),
      maxClientTimeoutMs: options.maxClientTimeoutMs,
    }),
  };
  return [...names.map((name) => FACTORIES[name](settings)), ...companionInstrumentations(names, settings)];
}

/**
 * request-budget's own additions for the named libraries, beside their instrumentations (its own,
 * or an app's own instances: see otel-setup.ts).
 */
export function companionInstrumentations(names: readonly InstrumentationName[], settings: InstrumentationSettings): Instrumentation[] {
  const instrumentations: Instrumentation[] = [];
  if (names.includes('pg') || names.includes('mysql2') || names.includes('redis')) {
    instrumentations.push(new PoolContextInstrumentation({ pgBindsCallersWithSpan: settings.pgInstrumented }));
  }
  // The wire bytes of the rows, beside the rows the response hooks count.
  if (names.includes('pg')) instrumentations.push(new PgRowBytesInstrumentation());
  if (names.includes('mysql2')) instrumentations.push(new MysqlRowBytesInstrumentation());
  // mysql2 runs callbacks in the context of whoever opened the connection: bind them to the caller.
  // Streamed queries: one query, ended at its last row (after instrumentation-mysql2, to wrap it).
  if (names.includes('mysql2')) instrumentations.push(new MysqlCallbackContextInstrumentation(), new MysqlStreamInstrumentation());
  // node-redis: MULTI and EXEC are commands the server runs, with no span of their own.
  if (names.includes('redis')) instrumentations.push(new RedisTransactionInstrumentation());
  if (names.includes('koa')) instrumentations.push(new KoaRouteInstrumentation());
  // After instrumentation-amqplib, to run inside each message's span: names it as a job and
  // keeps it open until the handler's promise settles.
  if (names.includes('amqplib')) instrumentations.push(new AmqplibJobInstrumentation());
  // Bluebird's callbacks lose the request's context unless its asyncHooks option is on, whatever
  // the driver: turned on as it loads (it patches nothing when the app has no Bluebird).
  instrumentations.push(new BluebirdContextInstrumentation());
  // What bounds axios, got and undici calls, for the http and undici hooks to judge.
  if (settings.clientTimeouts.isEnabled()) instrumentations.push(settings.clientTimeouts);
  return instrumentations;
}

/** instrumentation-pg `responseHook`: the rows the query returned, and their wire bytes. */
export const pgResponseHook = (span: Span, { data }: { data: unknown }): void => recordRows(span, pgRows(data), pgRowBytes(data));

/** instrumentation-mysql2 `responseHook`: the rows the query returned, and their wire bytes. */
export const mysql2ResponseHook = (span: Span, { queryResults }: { queryResults: unknown }): void => {
  // Decided once for both: deciding reads every row of a large result.
  const multiple = Array.isArray(queryResults) && isMultipleResults(queryResults);
  recordRows(span, mysqlRows(queryResults, multiple), mysqlRowBytes(queryResults, multiple));
};

/** Rows and their bytes go together: bytes are left out only when they are unknown. */
function recordRows(span: Span, rows: number, bytes: number | undefined): void {
  span.setAttribute(DB_RESPONSE_RETURNED_ROWS, rows);
  if (bytes !== undefined) span.setAttribute(DB_RESPONSE_BYTES, bytes);
}

/** pg: one result, or an array of results for a multi-statement query. */
function pgRows(data: unknown): number {
  if (Array.isArray(data)) return data.reduce((sum: number, result) => sum + pgRows(result), 0);
  const rows = (data as { rows?: unknown } | undefined)?.rows;
  return Array.isArray(rows) ? rows.length : 0;
}

/**
 * mysql2: an array of rows; for multi-statement queries and CALL, an array of result sets (row
 * arrays) and result headers. Headers (INSERT, UPDATE) return no rows. A streamed query hands
 * over its row count instead (see mysql-stream-instrumentation.ts).
 */
function mysqlRows(results: unknown, multiple: boolean): number {
  const streamed = streamedRowCount(results);
  if (streamed !== undefined) return streamed;
  if (!Array.isArray(results)) return 0;
  if (!multiple) return results.length;
  return results.reduce((sum: number, item) => sum + (Array.isArray(item) ? item.length : 0), 0);
}

/** mysql2: the wire bytes of the rows {@link mysqlRows} counts, or undefined when any of them went unmeasured. */
function mysqlRowBytes(results: unknown, multiple: boolean): number | undefined {
  if (streamedRowCount(results) !== undefined) return streamedRowBytes(results);
  if (!Array.isArray(results)) return isResultHeader(results) ? 0 : undefined;
  if (!multiple) return rowSetBytes(results);
  let sum = 0;
  for (const item of results) {
    const bytes = Array.isArray(item) ? rowSetBytes(item) : 0;
    if (bytes === undefined) return undefined;
    sum += bytes;
  }
  return sum;
}

/** Whether mysql2 answered with several result sets (and headers) rather than one set of rows. */
function isMultipleResults(results: readonly unknown[]): boolean {
  // A row is an object (or, with rowsAsArray, an array of values); a result set is an array
  // of object rows.
  const isResultSet = (item: unknown) => Array.isArray(item) && item.every((row) => typeof row === 'object' && row !== null && !Array.isArray(row));
  return results.some(isResultHeader) || (results.length > 0 && results.every(isResultSet));
}

function isResultHeader(item: unknown): boolean {
  return typeof item === 'object' && item !== null && 'affectedRows' in item;
}
