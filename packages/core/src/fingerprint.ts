/**
 * Statement fingerprints: the same statement with different literal values maps to one string,
 * so an N+1 loop shows as one statement repeated N times whether or not the driver
 * parameterised it.
 */

/** Longest statement prefix that is fingerprinted; bulk statements beyond it share a prefix. */
export const FINGERPRINT_MAX_INPUT = 4096;

// Quoted identifiers ("events-2024", `table 2`) are names, not values: kept as they are.
const QUOTED_IDENTIFIER = /"(?:[^"]|"")*"|`(?:[^`]|``)*`/g;
// String literals, with '' (standard SQL) and \' (MySQL) escapes.
const SINGLE_QUOTED = /'(?:[^'\\]|''|\\.)*'/g;
const HEX_NUMBER = /(?<![\w$])0x[0-9a-f]+\b/gi;
// Numbers that stand alone: not part of an identifier (t1), a placeholder ($1) or a qualified
// name (a.1). A minus is part of the number where it cannot be a subtraction: after an
// operator, a comma, a parenthesis, a keyword, or at the start.
const NUMBER =
  /(?:(?<=(?:^|[=<>(,+*/-]|\b(?:SELECT|WHERE|AND|OR|NOT|THEN|ELSE|WHEN|VALUES|SET|BY|LIMIT|OFFSET|BETWEEN|IN|IS|LIKE|RETURN))\s*)-\s*)?(?<![\w$.:@])(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?(?![\w.])/gi;
// Numbers inside keys such as `user:42` (Redis) also vary per call.
const KEY_NUMBER = /(?<=[:/])\d+(?=\b)/g;
const LIST_OF_PLACEHOLDERS = /\(\s*(?:\?|\$\d+)(?:\s*,\s*(?:\?|\$\d+))*\s*\)/g;
const REPEATED_TUPLES = /\(\?\)(?:\s*,\s*\(\?\))+/g;
const WHITESPACE = /\s+/g;
// Stands in for a quoted identifier while literals are replaced: the letter before the index
// keeps the number rules off it.
const identifierMark = (index: number) => `\u0000Q${index}\u0000`;
// eslint-disable-next-line no-control-regex -- NUL cannot occur in SQL text, so the mark cannot collide with it
const IDENTIFIER_MARK = /\u0000Q(\d+)\u0000/g;

/**
 * Normalises a statement: literals become `?`, `IN (?, ?, ?)` and `IN ($1, $2)` become `IN (?)`,
 * runs of whitespace become one space; quoted identifiers are left alone.
 */
export function fingerprintStatement(statement: string): string {
  let text = statement.length > FINGERPRINT_MAX_INPUT ? statement.slice(0, FINGERPRINT_MAX_INPUT) : statement;
  // Each pass runs only when the text holds what it looks for: most statements need three or four.
  const identifiers: string[] = [];
  if (text.includes('"') || text.includes('`')) text = text.replace(QUOTED_IDENTIFIER, (identifier) => identifierMark(identifiers.push(identifier) - 1));
  if (text.includes("'")) text = text.replace(SINGLE_QUOTED, '?');
  if (HAS_HEX_PREFIX.test(text)) text = text.replace(HEX_NUMBER, '?');
  if (HAS_DIGIT.test(text)) {
    text = text.replace(NUMBER, '?');
    if (text.includes(':') || text.includes('/')) text = text.replace(KEY_NUMBER, '?');
  }
  if (text.includes('(')) text = text.replace(LIST_OF_PLACEHOLDERS, '(?)').replace(REPEATED_TUPLES, '(?)');
  if (needsWhitespacePass(text)) text = text.replace(WHITESPACE, ' ');
  text = text.trim();
  return identifiers.length > 0 ? text.replace(IDENTIFIER_MARK, (_, index: string) => identifiers[Number(index)]) : text;
}

const HAS_HEX_PREFIX = /0x/i;
const HAS_DIGIT = /\d/;
// Whitespace other than single spaces: a tab, a newline, or two in a row. The same as
// /[^\S ]|\s\s/ (\s but the space, spelled out), which irregexp runs in about half the time.
const NEEDS_WHITESPACE_PASS = /[\t-\r\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]|\s\s/;

/** Whether the text has whitespace other than single spaces (see NEEDS_WHITESPACE_PASS). */
export function needsWhitespacePass(text: string): boolean {
  return NEEDS_WHITESPACE_PASS.test(text);
}

/**
 * A bounded memo of {@link fingerprintStatement}. Parameterised statements repeat verbatim, so
 * nearly every lookup is a hit; when full it starts over rather than tracking recency, which
 * keeps a hit to one Map lookup. Statements longer than {@link FINGERPRINT_MAX_INPUT} are not
 * kept (their text would make the memo's memory unbounded).
 *
 * Statements sent with their literals inlined (psycopg2 and mysqlclient interpolate on the
 * client) never repeat: there the memo costs a hash and an insert per statement for nothing. So
 * when it fills having answered fewer than one lookup in {@link MIN_HIT_SHARE}, it rests for
 * {@link REST_FILLS} times its size in lookups (fingerprinting directly), then tries again.
 */
export class FingerprintCache {
  private readonly entries = new Map<string, string>();
  private lookups = 0;
  private hits = 0;
  private restLeft = 0;

  /** @param maxEntries statements remembered before starting over (default 2000) */
  constructor(private readonly maxEntries = 2000) {}

  get(statement: string): string {
    if (statement.length > FINGERPRINT_MAX_INPUT) return fingerprintStatement(statement);
    if (this.restLeft > 0) {
      this.restLeft -= 1;
      return fingerprintStatement(statement);
    }
    this.lookups += 1;
    let fingerprint = this.entries.get(statement);
    if (fingerprint !== undefined) {
      this.hits += 1;
      return fingerprint;
    }
    fingerprint = fingerprintStatement(statement);
    if (this.entries.size >= this.maxEntries) {
      this.entries.clear();
      const paid = this.hits * MIN_HIT_SHARE >= this.lookups;
      this.lookups = 0;
      this.hits = 0;
      if (!paid) {
        this.restLeft = this.maxEntries * REST_FILLS;
        return fingerprint;
      }
    }
    this.entries.set(statement, fingerprint);
    return fingerprint;
  }

  /** Statements remembered now. */
  get size(): number {
    return this.entries.size;
  }
}

/** The memo pays when at least one lookup in this many is a hit. */
const MIN_HIT_SHARE = 8;
/** How long a memo that did not pay rests: this many times its size, in lookups. */
const REST_FILLS = 8;
