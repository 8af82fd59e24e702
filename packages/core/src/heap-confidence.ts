import type { HeapConfidence } from './attributes';

/**
 * How far a request's heap delta can be trusted, from how many requests overlapped it and
 * whether a GC completed meanwhile (see {@link HeapConfidence}).
 */
export function heapConfidence(inFlight: number, gcCount: number): HeapConfidence {
  if (inFlight > 1) return 'low';
  return gcCount > 0 ? 'medium' : 'high';
}
