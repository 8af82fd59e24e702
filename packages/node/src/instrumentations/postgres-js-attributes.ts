/**
 * Pure translation of a postgres.js query (its text, published trace context and result) into
 * the stable database semantic conventions: span name, attributes, rows returned, error type.
 */
import type { Attributes } from '@opentelemetry/api';
import {
  ATTR_DB_NAMESPACE,
  ATTR_DB_OPERATION_BATCH_SIZE,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_QUERY_TEXT,
  ATTR_DB_RESPONSE_STATUS_CODE,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  DB_SYSTEM_NAME_VALUE_POSTGRESQL,
} from '@opentelemetry/semantic-conventions';
import type { PostgresJsQueryTrace } from './postgres-js-types';

// The first keyword, after any leading SQL comments: `/* app */ select ...` is a SELECT.
const FIRST_KEYWORD = /^\s*(?:(?:--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)\s*)*([A-Za-z]+)/;
// A PostgreSQL SQLSTATE: five digits or upper-case letters.
const SQLSTATE = /^[0-9A-Z]{5}$/;

/** What a query is, as far as its span says: the text, the operation, and the size of a batch. */
export interface QueryDescription {
  readonly text: string | undefined;
  readonly operation: string | undefined;
  readonly batchSize: number | undefined;
}

/** The operation of a statement text, upper-cased as the server's command tags are, e.g. `SELECT`. */
export function operationOf(text: string | null | undefined): string | undefined {
  if (typeof text !== 'string') return undefined;
  const match = FIRST_KEYWORD.exec(text);
  return match === null ? undefined : match[1].toUpperCase();
}

/** A single query from its text (parameterised, as sent: never with parameter values). */
export function describeStatement(text: string | null | undefined): QueryDescription {
  const kept = nonEmptyString(text);
  return { text: kept, operation: operationOf(kept), batchSize: undefined };
}

/**
 * A batch (`sql.batch([...])`) from its statements, per the conventions for batches: one text
 * when they all share it, else all of them joined by `; `; `BATCH {operation}` when they share one.
 */
export function describeBatch(texts: readonly string[], size: number): QueryDescription {
  const distinctTexts = new Set(texts);
  const operations = new Set(texts.map(operationOf));
  const [operation] = operations;
  return {
    text: texts.length === 0 ? undefined : distinctTexts.size === 1 ? texts[0] : texts.join('; '),
    operation: operations.size === 1 && operation !== undefined && texts.length === size ? `BATCH ${operation}` : undefined,
    batchSize: size,
  };
}

/**
 * A batch recognised by its result only (a plain array of results and no published text), when
 * the statements themselves could not be read: the size, and the command tag they share.
 */
export function describeBatchResult(result: unknown): QueryDescription | undefined {
  if (!Array.isArray(result) || isResult(result) || result.length === 0 || !result.every(isResult)) return undefined;
  const commands = new Set(result.map((item) => item.command));
  const [command] = commands;
  return { text: undefined, operation: commands.size === 1 && typeof command === 'string' ? `BATCH ${command}` : undefined, batchSize: result.length };
}

/**
 * Span name per the semantic conventions: `{operation} {namespace}`, the operation alone, or
 * the system name when not even the operation is known (never the namespace alone: a database
 * may be called `connect`, the name of the connection spans cost attribution skips).
 */
export function spanNameOf(operation: string | undefined, namespace: string | undefined): string {
  if (operation === undefined) return DB_SYSTEM_NAME_VALUE_POSTGRESQL;
  return namespace === undefined ? operation : `${operation} ${namespace}`;
}

/** The database a trace context names, if any. */
export function namespaceOf(trace: PostgresJsQueryTrace): string | undefined {
  return nonEmptyString(trace.database);
}

/** The attributes describing the query itself. */
export function queryAttributes(description: QueryDescription, namespace: string | undefined): Attributes {
  const attributes: Attributes = { [ATTR_DB_SYSTEM_NAME]: DB_SYSTEM_NAME_VALUE_POSTGRESQL };
  if (namespace !== undefined) attributes[ATTR_DB_NAMESPACE] = namespace;
  if (description.text !== undefined) attributes[ATTR_DB_QUERY_TEXT] = description.text;
  if (description.operation !== undefined) attributes[ATTR_DB_OPERATION_NAME] = description.operation;
  if (description.batchSize !== undefined) attributes[ATTR_DB_OPERATION_BATCH_SIZE] = description.batchSize;
  return attributes;
}

/** The server the query went to, known once it was sent on a connection. */
export function serverAttributes(trace: PostgresJsQueryTrace): Attributes {
  const attributes: Attributes = {};
  const host = nonEmptyString(trace.host);
  if (host !== undefined) attributes[ATTR_SERVER_ADDRESS] = host;
  if (typeof trace.port === 'number' && Number.isInteger(trace.port)) attributes[ATTR_SERVER_PORT] = trace.port;
  return attributes;
}

/** Attributes of a failed query: the SQLSTATE where the server sent one, else the error's code or name. */
export function errorAttributes(error: unknown): Attributes {
  const code = (error as { code?: unknown } | null)?.code;
  const name = (error as { name?: unknown } | null)?.name;
  const attributes: Attributes = {};
  if (typeof code === 'string' && SQLSTATE.test(code) && name === 'PostgresError') attributes[ATTR_DB_RESPONSE_STATUS_CODE] = code;
  attributes[ATTR_ERROR_TYPE] = typeof code === 'string' && code.length > 0 ? code : typeof name === 'string' && name.length > 0 ? name : '_OTHER';
  return attributes;
}

/** The message of a failed query, for the span status. */
export function errorMessage(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(error);
}

/**
 * Rows the query returned, from the server's own count (the CommandComplete tag) where the
 * statement returns rows. `INSERT`/`UPDATE`/`DELETE` without RETURNING return none although their
 * tag counts the rows they changed. A multi-statement query or a batch resolves with one result
 * per statement.
 */
export function returnedRows(result: unknown): number {
  if (isResult(result)) return rowsOfResult(result);
  if (!Array.isArray(result)) return 0;
  let rows = 0;
  for (const item of result) if (isResult(item)) rows += rowsOfResult(item);
  return rows;
}

interface ResultLike extends Array<unknown> {
  readonly count?: unknown;
  readonly command?: unknown;
  readonly columns?: unknown;
}

/** A postgres.js Result: an array carrying the command tag (a multi-statement answer is a plain array of them). */
function isResult(value: unknown): value is ResultLike {
  return Array.isArray(value) && 'command' in value;
}

function rowsOfResult(result: ResultLike): number {
  // A row description (columns) means the statement returns rows; `.forEach()` keeps none of
  // them in the result, so the server's count is the one that is right in every mode.
  const returnsRows = (Array.isArray(result.columns) && result.columns.length > 0) || result.length > 0;
  if (!returnsRows) return 0;
  return typeof result.count === 'number' && Number.isInteger(result.count) && result.count >= 0 ? result.count : result.length;
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}
