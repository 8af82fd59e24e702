export * from './attributes';
export { fingerprintStatement, FingerprintCache, FINGERPRINT_MAX_INPUT } from './fingerprint';
export { classifySpan } from './span-classifier';
export type { AttributeMap, CostContribution, DbOperation, HttpClientCall, SpanKindName } from './span-classifier';
export { CostTally, MAX_FINGERPRINTS_PER_TALLY, roundMs } from './cost-tally';
export type { CostAttributes, RepeatedStatement } from './cost-tally';
export { heapConfidence } from './heap-confidence';
