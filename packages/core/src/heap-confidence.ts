import type { HeapConfidence } from './attributes';

/**
 * How far a request's heap delta can be trusted, from how many requests overlapped it and
 * whether a garbage collection ran meanwhile (see {@link HeapConfidence}).
 */
export function heapConfidence(inFlight: number, gcRan: boolean): HeapConfidence {
  if (inFlight > 1) return 'low';
  return gcRan ? 'medium' : 'high';
}
