/**
 * What a root span is called in budgets, reports and metrics: a request by its method and route
 * template, a job by its name. One place, so a label means the same in every output.
 */
import { HTTP_METHOD_LEGACY, HTTP_REQUEST_METHOD, HTTP_ROUTE, JOB_NAME_ATTRIBUTE, MESSAGING_DESTINATION_NAME } from './attributes';
import { UNROUTED } from './breach-report';
import type { AttributeMap } from './span-classifier';

export interface RootRoute {
  /** The job's name, for a job root. */
  readonly job: string | undefined;
  readonly method: string | undefined;
  /** The route template (`http.route`), never the raw path. */
  readonly template: string | undefined;
  /** `GET /users/:id`, `GET (unrouted)`, `ANY (unrouted)` or `job email.send`. */
  readonly label: string;
}

/** The parts of a root's route: its job's name, or its method and route template. */
export type RouteParts = Omit<RootRoute, 'label'>;

export function routePartsOf(attributes: AttributeMap): RouteParts {
  const method = nonEmpty(attributes[HTTP_REQUEST_METHOD] ?? attributes[HTTP_METHOD_LEGACY]);
  // A message consumer's own span (a queue library's telemetry) names no job: its queue does.
  const job = nonEmpty(attributes[JOB_NAME_ATTRIBUTE]) ?? (method === undefined ? nonEmpty(attributes[MESSAGING_DESTINATION_NAME]) : undefined);
  return { job, method, template: nonEmpty(attributes[HTTP_ROUTE]) };
}

export function routeOf(attributes: AttributeMap): RootRoute {
  const parts = routePartsOf(attributes);
  const label = parts.job !== undefined ? `job ${parts.job}` : `${parts.method ?? 'ANY'} ${parts.template ?? UNROUTED}`;
  return { ...parts, label };
}

function nonEmpty(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}
