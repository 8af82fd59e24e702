/**
 * Requests whose every statement carries a tag of their own as a literal (`?tag=`), so the
 * database server's log says which request ran what: the truth for one request's cost record,
 * even with many requests in flight at once. MariaDB's general log keeps the statement text with
 * its values, so counting its entries that contain `'<tag>'` gives that request's statements.
 */
import { expect } from 'vitest';
import { concurrently } from '../support/http';
import type { MariaDbTruth, ServerDelta } from '../support/db-truth';
import type { OtlpReceiver, ReceivedSpan } from '../support/otlp-receiver';
import { awaitServerSpan, tracedGet, type TracedRequest } from '../support/traced-request';

let sequence = 0;

/** A tag no other request of this test run uses: lower-case letters, digits and `_`. */
export function newTag(prefix: string): string {
  sequence += 1;
  return `${prefix}_${process.pid}_${sequence}`;
}

/** Statements the server ran whose text contains the tag as a quoted literal. */
export function countTagged(delta: ServerDelta, tag: string): number {
  let calls = 0;
  for (const [text, { calls: n }] of delta.byStatement) if (text.includes(`'${tag}'`)) calls += n;
  return calls;
}

/** One request's cost record beside the server's count of its statements. */
export interface TaggedResult {
  readonly path: string;
  readonly tag: string;
  readonly status: number;
  readonly body: string;
  readonly server: ReceivedSpan;
  readonly trace: ReceivedSpan[];
  /** Statements the server ran for this request's tag. */
  readonly serverStatements: number;
  /** The cost record's query count. */
  readonly queries: unknown;
  readonly rows: unknown;
}

/** `path` with `tag` added as the `tag` query parameter. */
function withTag(baseUrl: string, path: string, tag: string): string {
  return `${baseUrl}${path}${path.includes('?') ? '&' : '?'}tag=${tag}`;
}

/**
 * Sends the requests all at once (or one by one with `inFlight: 1`), waits for each server span,
 * and reads the server's log before and after: each result holds the cost record and the
 * server's count for that request's tag. `delta` is everything the server ran meanwhile.
 */
export async function runTagged(
  receiver: OtlpReceiver,
  truth: MariaDbTruth,
  baseUrl: string,
  paths: readonly string[],
  options: { prefix: string; oneAtATime?: boolean },
): Promise<{ results: TaggedResult[]; delta: ServerDelta }> {
  const tags = paths.map(() => newTag(options.prefix));
  const send = (i: number) => tracedGet(withTag(baseUrl, paths[i], tags[i]));
  let sent: TracedRequest[] = [];
  const delta = await truth.during(async () => {
    if (options.oneAtATime) {
      for (let i = 0; i < paths.length; i += 1) sent.push(await send(i));
    } else {
      sent = await concurrently(paths.length, send);
    }
  });
  const results: TaggedResult[] = [];
  for (const [i, request] of sent.entries()) {
    const { server, trace } = await awaitServerSpan(receiver, request);
    results.push({
      path: paths[i],
      tag: tags[i],
      status: request.response.status,
      body: request.response.body,
      server,
      trace,
      serverStatements: countTagged(delta, tags[i]),
      queries: server.attributes['cost.db.queries'],
      rows: server.attributes['cost.db.rows'],
    });
  }
  return { results, delta };
}

/**
 * Every request's cost record counts exactly the statements the server ran for its tag, every
 * statement span in its trace carries its own tag, and the server ran nothing beside them but
 * `background` statements (attributed to no request).
 */
export function expectExactAttribution(results: readonly TaggedResult[], delta: ServerDelta, background: string | undefined): void {
  const wrong = results.filter((r) => r.status !== 200 || r.queries !== r.serverStatements);
  expect(
    wrong.map((r) => ({ path: r.path, status: r.status, body: r.status === 200 ? undefined : r.body, queries: r.queries, server: r.serverStatements })),
  ).toEqual([]);
  for (const r of results) {
    const foreign = r.trace.filter((s) => typeof s.attributes['db.query.text'] === 'string' && !String(s.attributes['db.query.text']).includes(`'${r.tag}'`));
    expect({ path: r.path, foreign: foreign.map((s) => s.attributes['db.query.text']) }).toEqual({ path: r.path, foreign: [] });
  }
  // Nothing else ran: every statement the server saw is a request's or the background's.
  const known = [...results.map((r) => `'${r.tag}'`), ...(background === undefined ? [] : [`'${background}'`])];
  const others = [...delta.byStatement].filter(([text]) => !known.some((tag) => text.includes(tag)));
  expect(others).toEqual([]);
  const sum = results.reduce((total, r) => total + r.serverStatements, 0);
  const backgroundStatements = background === undefined ? 0 : countTagged(delta, background);
  expect({ total: delta.statements }).toEqual({ total: sum + backgroundStatements });
}
