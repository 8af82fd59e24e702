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

/**
 * A route's figures: by time bucket, and since the process started — what a quiet route (too
 * few measured requests in the window, at 5% sampling) is estimated from instead.
 */
interface RouteFigures {
  readonly buckets: Bucket[];
  readonly lifetime: Bucket;
}

export class RouteMemoryEstimates {
  private readonly bucketMs: number;
  private readonly bucketCount: number;
  private readonly minRequests: number;
  private readonly maxRoutes: number;
  private readonly now: () => number;
  private readonly routes = new Map<string, RouteFigures>();

  constructor(options: MemoryEstimatesOptions = {}) {
    this.bucketCount = Math.max(1, options.buckets ?? 5);
    this.bucketMs = Math.max(1, (options.windowMs ?? 300_000) / this.bucketCount);
    this.minRequests = Math.max(1, options.minRequests ?? 3);
    this.maxRoutes = Math.max(1, options.maxRoutes ?? 1000);
    this.now = options.now ?? Date.now;
  }

  /**
   * The route's estimate now: over the window, or since the process started when the window
   * holds too few of its requests; undefined before it has enough requests at all.
   */
  estimate(route: string): MemoryEstimate | undefined {
    const figures = this.routes.get(route);
    if (figures === undefined) return undefined;
    const oldest = this.stampOf(this.now()) - this.bucketCount + 1;
    const window: Bucket = { stamp: 0, requests: 0, sum: 0, sumOfSquares: 0 };
    for (const bucket of figures.buckets) {
      if (bucket.stamp < oldest) continue;
      window.requests += bucket.requests;
      window.sum += bucket.sum;
      window.sumOfSquares += bucket.sumOfSquares;
    }
    const basis = window.requests >= this.minRequests ? window : figures.lifetime;
    if (basis.requests < this.minRequests) return undefined;
    const { requests, sum, sumOfSquares } = basis;
    const mean = sum / requests;
    const variance = Math.max(0, sumOfSquares / requests - mean * mean);
    // Below zero only while a collection's freed bytes are missing (a record lost): no request allocates less than nothing.
    return { meanBytes: Math.max(0, Math.round(mean)), errorBytes: Math.round(Math.sqrt(variance / requests)), requests };
  }

  /** One ended request's allocation; returns the time bucket it went into, for `correct`. */
  record(route: string, bytes: number): number {
    const { bucket, lifetime } = this.currentBucket(route);
    for (const figures of [bucket, lifetime]) {
      figures.requests += 1;
      figures.sum += bytes;
      figures.sumOfSquares += bytes * bytes;
    }
    return bucket.stamp;
  }

  /**
   * Bytes a collection freed inside an ended request of the route, known only now: its figure,
   * recorded in bucket `recordedIn`, was `recorded` and is `recorded + bytes`. Corrected in that
   * bucket, so the request and its bytes leave the window together; dropped once it has.
   */
  correct(route: string, recordedIn: number, recorded: number, bytes: number): void {
    const figures = this.routes.get(route);
    if (figures === undefined) return;
    const bucket = figures.buckets[recordedIn % this.bucketCount];
    for (const corrected of bucket.stamp === recordedIn ? [bucket, figures.lifetime] : [figures.lifetime]) {
      corrected.sum += bytes;
      corrected.sumOfSquares += 2 * recorded * bytes + bytes * bytes;
    }
  }

  private currentBucket(route: string): { readonly bucket: Bucket; readonly lifetime: Bucket } {
    const stamp = this.stampOf(this.now());
    let figures = this.routes.get(route);
    if (figures === undefined) {
      if (this.routes.size >= this.maxRoutes) this.routes.delete(this.routes.keys().next().value as string);
      const empty = () => ({ stamp: -1, requests: 0, sum: 0, sumOfSquares: 0 });
      figures = { buckets: Array.from({ length: this.bucketCount }, empty), lifetime: empty() };
      this.routes.set(route, figures);
    }
    const bucket = figures.buckets[stamp % this.bucketCount];
    if (bucket.stamp !== stamp) {
      bucket.stamp = stamp;
      bucket.requests = 0;
      bucket.sum = 0;
      bucket.sumOfSquares = 0;
    }
    return { bucket, lifetime: figures.lifetime };
  }

  private stampOf(nowMs: number): number {
    return Math.floor(nowMs / this.bucketMs);
  }
}
