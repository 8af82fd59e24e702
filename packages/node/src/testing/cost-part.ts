/**
 * One part of what a piece of test code cost: a request it sent to this process's server, a job,
 * or the measured code's own queries and calls. measureCost adds parts up; the CI baseline
 * recorder aggregates them per route and test.
 */
import { hrTimeToMilliseconds } from '@opentelemetry/core';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { costRecordFromAttributes, routeOf, type CostRecord, type RepeatedStatement } from '@request-budget/core';
import { costStatementsOf } from '../cost-span-processor';

/** The cost of one request, job, or of the measured code itself. */
export interface CostPart extends CostRecord {
  /** `GET /users/:id`, `GET (unrouted)`, `job email.send`, or `measureCost` for the measured code. */
  readonly route: string;
  /** Every statement fingerprint with its count in this part, most repeated first. */
  readonly statements: readonly RepeatedStatement[];
  /** The response status of a request, when the server span recorded one. */
  readonly status?: number;
}

/** The route label of the measured code's own part (`measureCost listOrders` when named). */
export function measuredRoute(name: string | undefined): string {
  return name === undefined || name === '' ? 'measureCost' : `measureCost ${name}`;
}

/** A root span's part, read from the cost record cost attribution wrote onto it. */
export function costPartOf(root: ReadableSpan, route: string = routeOf(root.attributes).label): CostPart {
  const status = root.attributes['http.response.status_code'] ?? root.attributes['http.status_code'];
  return {
    ...costRecordFromAttributes(root.attributes, hrTimeToMilliseconds(root.duration)),
    route,
    statements: sortStatements(costStatementsOf(root) ?? []),
    ...(typeof status === 'number' ? { status } : {}),
  };
}

/** Most repeated first, then by text: the same order on every run. */
export function sortStatements(statements: readonly RepeatedStatement[]): RepeatedStatement[] {
  return [...statements].sort((a, b) => b.count - a.count || (a.fingerprint < b.fingerprint ? -1 : a.fingerprint > b.fingerprint ? 1 : 0));
}
