/**
 * Every name in the attribute contract (attributes.ts), as one set: what request-budget reads
 * from a span or writes onto one. A span's other attributes never change a cost record or a
 * judgement, so a reader may leave them unread (the collector reads only these from the wire).
 * Derived from the module, so a name added there is here too; a test runs the classifiers and the
 * judgement on spans that answer every name and checks they ask for none outside this set.
 */
import * as contract from './attributes';

export const CONTRACT_ATTRIBUTES: ReadonlySet<string> = new Set(
  (Object.values(contract) as unknown[]).filter((value): value is string => typeof value === 'string'),
);
