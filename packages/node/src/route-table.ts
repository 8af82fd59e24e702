/**
 * The metrics' route of a root span: `route` as core's routeOf labels it, at most `maxRoutes`
 * distinct (service, route) pairs, the rest sharing the service's `(other)`. A span's route is
 * found again by its parts (core's routePartsOf) in nested maps, so a request builds no label
 * string (routeOf does, once per new route).
 */
import type { Attributes } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import { BUDGET_METRICS, LIMIT_NAMES, routeOf, routePartsOf, type BudgetRuleSet } from '@request-budget/core';
import type { CostMetricsState, CostRoute } from './cost-metrics-state';
import { serviceNameOf } from './service-label';

/** Route label shared by every route beyond the cap. */
export const OTHER_ROUTE = '(other)';

/** Stands for an absent method or template in the lookup maps: routeOf ignores empty strings, so none is ''. */
const ABSENT = '';

/** One service's routes, by the raw values routeOf reads. */
interface ServiceRoutes {
  readonly service: string;
  readonly byJob: Map<string, CostRoute>;
  /** By method, then template. */
  readonly byMethod: Map<string, Map<string, CostRoute>>;
  other: CostRoute | undefined;
}

export interface RouteTableOptions {
  readonly state: CostMetricsState;
  readonly maxRoutes: number;
  readonly defaultService: string;
  readonly rules: BudgetRuleSet | undefined;
}

export class RouteTable {
  private readonly state: CostMetricsState;
  private readonly maxRoutes: number;
  private readonly defaultService: string;
  private readonly rules: BudgetRuleSet | undefined;
  /** Labelled routes, by service and label: the canonical entries, whatever raw values led to them. */
  private readonly labelled = new Map<string, CostRoute>();
  private readonly services = new Map<string, ServiceRoutes>();
  /** Raw keys in the lookup maps; past twice the cap, routes beyond it are not remembered (they take routeOf each time). */
  private remembered = 0;
  /** The service of the last resource seen: a provider's spans share one resource object. */
  private lastResource: Resource | undefined;
  private lastService: ServiceRoutes | undefined;

  constructor(options: RouteTableOptions) {
    this.state = options.state;
    this.maxRoutes = options.maxRoutes;
    this.defaultService = options.defaultService;
    this.rules = options.rules;
  }

  routeOf(attributes: Attributes, resource: Resource): CostRoute {
    const service = this.serviceOf(resource);
    // The parts core's routeOf labels; label and limits are made once per new route.
    const { job, method = ABSENT, template = ABSENT } = routePartsOf(attributes);
    if (job !== undefined) return service.byJob.get(job) ?? this.addRoute(service, attributes, job, ABSENT, ABSENT);
    return service.byMethod.get(method)?.get(template) ?? this.addRoute(service, attributes, undefined, method, template);
  }

  private serviceOf(resource: Resource): ServiceRoutes {
    if (resource !== this.lastResource || this.lastService === undefined) {
      const name = serviceNameOf(resource) ?? this.defaultService;
      let service = this.services.get(name);
      if (service === undefined) {
        service = { service: name, byJob: new Map(), byMethod: new Map(), other: undefined };
        this.services.set(name, service);
      }
      this.lastResource = resource;
      this.lastService = service;
    }
    return this.lastService;
  }

  /** A raw key not seen yet: its label's entry, made if under the cap, else the service's `(other)`. */
  private addRoute(service: ServiceRoutes, attributes: Attributes, job: string | undefined, method: string, template: string): CostRoute {
    const { label, ...route } = routeOf(attributes);
    const key = `${service.service}\n${label}`;
    let entry = this.labelled.get(key);
    if (entry === undefined && this.labelled.size < this.maxRoutes) {
      entry = this.state.addRoute(service.service, label, this.limitsFor(route.job, route.method ?? 'ANY', route.template));
      this.labelled.set(key, entry);
    }
    entry ??= service.other ??= this.state.addRoute(service.service, OTHER_ROUTE, {});
    if (this.remembered < 2 * this.maxRoutes) {
      this.remembered += 1;
      if (job !== undefined) service.byJob.set(job, entry);
      else {
        let byTemplate = service.byMethod.get(method);
        if (byTemplate === undefined) service.byMethod.set(method, (byTemplate = new Map()));
        byTemplate.set(template, entry);
      }
    }
    return entry;
  }

  private limitsFor(job: string | undefined, method: string, template: string | undefined): Partial<Record<string, number>> {
    if (this.rules === undefined) return {};
    const rule = job !== undefined ? this.rules.forJob(job) : this.rules.forRoute(method, template);
    const limits: Partial<Record<string, number>> = {};
    for (const name of LIMIT_NAMES) {
      const value = rule.limits[name];
      if (value !== undefined) limits[BUDGET_METRICS[name]] = value;
    }
    return limits;
  }
}
