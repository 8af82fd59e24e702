/**
 * Each route's estimate of the bytes one request allocates: the mean of its recent requests'
 * `cost.memory.allocated_bytes`, over a sliding window of time buckets, with the standard error of
 * that mean. A collection whose freed bytes become known after its request ended (GC entries
 * arrive a tick late) is still added to the route's sum, so the mean is complete where a single
 * request's figure may not be.
 */

/** The estimate of one route. */
export interface MemoryEstimate {
  readonly meanBytes: number;
  /** Standard error of the mean: the spread of the requests it averages over √requests. */
  readonly errorBytes: number;
  readonly requests: number;
}

export interface MemoryEstimatesOptions {
  /** Requests of a route are averaged over this long: 5% sampling measures a route at 1 request a second 15 times. @default 300_000 */
  readonly windowMs?: number;
  /** The window moves in this many steps. @default 5 */
  readonly buckets?: number;
  /** A route has an estimate once this many of its requests are in the window. @default 3 */
  readonly minRequests?: number;
  /** Routes tracked at most; beyond, the first one tracked is forgotten. @default 1000 */
  readonly maxRoutes?: number;
  /** Clock in ms, for tests. */
  readonly now?: () => number;
}

interface Bucket {
  stamp: number;
  requests: number;
  sum: number;
  sumOfSquares: number;
}

export class RouteMemoryEstimates {
  private readonly bucketMs: number;
  private readonly bucketCount: number;
  private readonly minRequests: number;
  private readonly maxRoutes: number;
  private readonly now: () => number;
  private readonly routes = new Map<string, Bucket[]>();

  constructor(options: MemoryEstimatesOptions = {}) {
    this.bucketCount = Math.max(1, options.buckets ?? 5);
    this.bucketMs = Math.max(1, (options.windowMs ?? 300_000) / this.bucketCount);
    this.minRequests = Math.max(1, options.minRequests ?? 3);
    this.maxRoutes = Math.max(1, options.maxRoutes ?? 1000);
    this.now = options.now ?? Date.now;
  }

  /** The route's estimate now, or undefined before it has enough requests. */
  estimate(route: string): MemoryEstimate | undefined {
    const buckets = this.routes.get(route);
    if (buckets === undefined) return undefined;
    const oldest = this.stampOf(this.now()) - this.bucketCount + 1;
    let requests = 0;
    let sum = 0;
    let sumOfSquares = 0;
    for (const bucket of buckets) {
      if (bucket.stamp < oldest) continue;
      requests += bucket.requests;
      sum += bucket.sum;
      sumOfSquares += bucket.sumOfSquares;
    }
    if (requests < this.minRequests) return undefined;
    const mean = sum / requests;
    const variance = Math.max(0, sumOfSquares / requests - mean * mean);
    return { meanBytes: Math.round(mean), errorBytes: Math.round(Math.sqrt(variance / requests)), requests };
  }

  /** One ended request's allocation; returns the time bucket it went into, for `correct`. */
  record(route: string, bytes: number): number {
    const bucket = this.currentBucket(route);
    bucket.requests += 1;
    bucket.sum += bytes;
    bucket.sumOfSquares += bytes * bytes;
    return bucket.stamp;
  }

  /**
   * Bytes a collection freed inside an ended request of the route, known only now: its figure,
   * recorded in bucket `recordedIn`, was `recorded` and is `recorded + bytes`. Corrected in that
   * bucket, so the request and its bytes leave the window together; dropped once it has.
   */
  correct(route: string, recordedIn: number, recorded: number, bytes: number): void {
    const bucket = this.routes.get(route)?.[recordedIn % this.bucketCount];
    if (bucket === undefined || bucket.stamp !== recordedIn) return;
    bucket.sum += bytes;
    bucket.sumOfSquares += 2 * recorded * bytes + bytes * bytes;
  }

  private currentBucket(route: string): Bucket {
    const stamp = this.stampOf(this.now());
    let buckets = this.routes.get(route);
    if (buckets === undefined) {
      if (this.routes.size >= this.maxRoutes) this.routes.delete(this.routes.keys().next().value as string);
      buckets = Array.from({ length: this.bucketCount }, () => ({ stamp: -1, requests: 0, sum: 0, sumOfSquares: 0 }));
      this.routes.set(route, buckets);
    }
    const bucket = buckets[stamp % this.bucketCount];
    if (bucket.stamp !== stamp) {
      bucket.stamp = stamp;
      bucket.requests = 0;
      bucket.sum = 0;
      bucket.sumOfSquares = 0;
    }
    return bucket;
  }

  private stampOf(nowMs: number): number {
    return Math.floor(nowMs / this.bucketMs);
  }
}
