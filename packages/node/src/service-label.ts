/**
 * The `service` label of request-budget's metrics: the service.name of the resource. Prometheus
 * keeps resource attributes out of the series (they go to target_info), so without it two
 * services scraped under one job would be summed into one.
 */
import type { Resource } from '@opentelemetry/resources';

/** What the SDK names a Node.js service that set no service.name. */
export const UNKNOWN_SERVICE = 'unknown_service:node';

/**
 * The resource's service.name, or undefined. Read from the raw attributes: the `attributes`
 * getter complains (and does not memoise) while asynchronous detectors are still pending.
 */
export function serviceNameOf(resource: Resource | undefined): string | undefined {
  try {
    for (const [key, value] of resource?.getRawAttributes() ?? []) {
      if (key === 'service.name') return typeof value === 'string' && value !== '' ? value : undefined;
    }
  } catch {
    // A resource of another SDK version without raw attributes: the caller's default applies.
  }
  return undefined;
}
