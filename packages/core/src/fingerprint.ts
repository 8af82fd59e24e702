/**
 * Statement fingerprints: the same statement with different literal values maps to one string,
 * so an N+1 loop shows as one statement repeated N times whether or not the driver
 * parameterised it.
 */

/** Longest statement prefix that is fingerprinted; bulk statements beyond it share a prefix. */
export const FINGERPRINT_MAX_INPUT = 4096;

const WHITESPACE = /\s+/g;
// '...' with '' escapes (SQL), "..." only after = or in lists would be ambiguous with quoted
// identifiers, so double quotes are left alone.
const SINGLE_QUOTED = /'(?:[^']|'')*'/g;
// Numbers that stand alone: not part of an identifier (t1), a placeholder ($1) or a name (a.1).
const NUMBER = /(?<![\w$.:@])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w.])/gi;
// Numbers inside keys such as `user:42` (Redis) also vary per call.
const KEY_NUMBER = /(?<=[:/])\d+(?=\b)/g;
const LIST_OF_PLACEHOLDERS = /\(\s*\?(?:\s*,\s*\?)+\s*\)/g;
const REPEATED_TUPLES = /\(\?\)(?:\s*,\s*\(\?\))+/g;
const NUMBERED_PLACEHOLDER_LIST = /\(\s*\$\d+(?:\s*,\s*\$\d+)+\s*\)/g;

/**
 * Normalises a statement: literals become `?`, `IN (?, ?, ?)` becomes `IN (?)`, runs of
 * whitespace become one space.
 */
export function fingerprintStatement(statement: string): string {
  const text = statement.length > FINGERPRINT_MAX_INPUT ? statement.slice(0, FINGERPRINT_MAX_INPUT) : statement;
  return text
    .replace(SINGLE_QUOTED, '?')
    .replace(NUMBER, '?')
    .replace(KEY_NUMBER, '?')
    .replace(NUMBERED_PLACEHOLDER_LIST, '(?)')
    .replace(LIST_OF_PLACEHOLDERS, '(?)')
    .replace(REPEATED_TUPLES, '(?)')
    .replace(WHITESPACE, ' ')
    .trim();
}

/**
 * A bounded memo of {@link fingerprintStatement}. Parameterised statements repeat verbatim,
 * so nearly every lookup is a hit; when full it starts over rather than tracking recency,
 * which keeps a hit to one Map lookup.
 */
export class FingerprintCache {
  private readonly entries = new Map<string, string>();

  constructor(private readonly maxEntries = 2000) {}

  get(statement: string): string {
    let fingerprint = this.entries.get(statement);
    if (fingerprint === undefined) {
      fingerprint = fingerprintStatement(statement);
      if (this.entries.size >= this.maxEntries) this.entries.clear();
      this.entries.set(statement, fingerprint);
    }
    return fingerprint;
  }
}
