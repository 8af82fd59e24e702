/**
 * Requests to an app whose statements PostgreSQL counts for a role of the test's own
 * (pg_stat_statements, see db-truth.ts): one at a time, each cost record beside what the server
 * ran meanwhile; or many in flight, each record beside its route's known cost and all of them
 * together beside the server's total. The fixtures' background loop (`SELECT $1::text AS
 * background`, outside any request) runs all along and is taken out of the server's figures.
 */
import { expect } from 'vitest';
import type { PgTruth, ServerDelta } from '../support/db-truth';
import { concurrently } from '../support/http';
import type { OtlpReceiver, ReceivedSpan } from '../support/otlp-receiver';
import { awaitServerSpan, tracedGet } from '../support/traced-request';

/** The statement of the fixtures' background loop (common.js), as pg_stat_statements keys it. */
export const BACKGROUND_STATEMENT = 'SELECT $1::text AS background';

/** What the server ran for the requests: everything but the background loop. */
export interface ServerCount {
  readonly statements: number;
  readonly rows: number;
}

export function withoutBackground(delta: ServerDelta): ServerCount {
  const background = delta.byStatement.get(BACKGROUND_STATEMENT) ?? { calls: 0, rows: 0 };
  return { statements: delta.statements - background.calls, rows: delta.rows - background.rows };
}

/** One request's cost record, as it arrived at the receiver. */
export interface CostedRequest {
  readonly path: string;
  readonly status: number;
  readonly server: ReceivedSpan;
  readonly trace: ReceivedSpan[];
  readonly queries: unknown;
  readonly rows: unknown;
}

async function costed(receiver: OtlpReceiver, path: string, request: Awaited<ReturnType<typeof tracedGet>>): Promise<CostedRequest> {
  const { server, trace } = await awaitServerSpan(receiver, request);
  return { path, status: request.response.status, server, trace, queries: server.attributes['cost.db.queries'], rows: server.attributes['cost.db.rows'] };
}

/** Sends one request and returns its cost record beside what the server ran for it. */
export async function oneRequest(receiver: OtlpReceiver, truth: PgTruth, baseUrl: string, path: string): Promise<CostedRequest & { serverCount: ServerCount }> {
  let sent: Awaited<ReturnType<typeof tracedGet>> | undefined;
  const delta = await truth.during(async () => {
    sent = await tracedGet(`${baseUrl}${path}`);
  });
  return { ...(await costed(receiver, path, sent!)), serverCount: withoutBackground(delta) };
}

/** Sends every request at once and returns their cost records beside the server's total. */
export async function inFlight(
  receiver: OtlpReceiver,
  truth: PgTruth,
  baseUrl: string,
  paths: readonly string[],
): Promise<{ results: CostedRequest[]; serverCount: ServerCount }> {
  let sent: Awaited<ReturnType<typeof tracedGet>>[] = [];
  const delta = await truth.during(async () => {
    sent = await concurrently(paths.length, (i) => tracedGet(`${baseUrl}${paths[i]}`));
  });
  const results: CostedRequest[] = [];
  for (const [i, request] of sent.entries()) results.push(await costed(receiver, paths[i], request));
  return { results, serverCount: withoutBackground(delta) };
}

/** The sum of a numeric attribute over the records (a missing one counts as NaN, to fail loudly). */
export function total(results: readonly CostedRequest[], key: 'queries' | 'rows'): number {
  return results.reduce((sum, r) => sum + (typeof r[key] === 'number' ? (r[key] as number) : Number.NaN), 0);
}

/** A route and what one request to it costs, by design of the fixture. */
export interface KnownRoute {
  readonly path: string;
  readonly statements: number;
  readonly rows: number;
}

/**
 * Sends 30 requests at once, cycling through `routes`: every record must be its route's known
 * cost, and the records together what the server ran for them.
 */
export async function expectExactInFlight(receiver: OtlpReceiver, truth: PgTruth, baseUrl: string, known: readonly KnownRoute[]): Promise<ServerCount> {
  const routes = Array.from({ length: 30 }, (_, i) => known[i % known.length]!);
  const { results, serverCount } = await inFlight(
    receiver,
    truth,
    baseUrl,
    routes.map((r) => r.path),
  );
  const wrong = results.filter((r, i) => r.status !== 200 || r.queries !== routes[i]!.statements || r.rows !== routes[i]!.rows);
  expect(wrong.map((r) => ({ path: r.path, status: r.status, queries: r.queries, rows: r.rows }))).toEqual([]);
  expect({ statements: total(results, 'queries'), rows: total(results, 'rows') }).toEqual(serverCount);
  expect(serverCount.statements).toBe(routes.reduce((sum, r) => sum + r.statements, 0));
  return serverCount;
}
