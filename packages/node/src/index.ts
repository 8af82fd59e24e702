export { start, shutdown, activeConfig } from './sdk';
export type { RequestBudgetOptions, TraceExporterName, OtlpProtocol } from './types';
export { CostSpanProcessor, ROOT_MARKER_ATTRIBUTE } from './cost-span-processor';
export { SummarySpanProcessor, formatSummaryLine } from './summary-span-processor';
export type { SummaryOptions } from './summary-span-processor';
export { resolveConfig, DEFAULTS } from './config';
export type { ResolvedConfig, Environment, ProblemReporter } from './config';
export { INSTRUMENTATION_NAMES } from './instrumentations';
export type { InstrumentationName } from './instrumentations';
