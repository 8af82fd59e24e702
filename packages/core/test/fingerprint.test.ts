import { describe, expect, it } from 'vitest';
import { FingerprintCache, fingerprintStatement, needsWhitespacePass } from '../src/fingerprint';

describe('fingerprintStatement', () => {
  it.each([
    ['SELECT * FROM users WHERE id = 42', 'SELECT * FROM users WHERE id = ?'],
    ["SELECT * FROM users WHERE name = 'O''Brien' AND age > 3.5", 'SELECT * FROM users WHERE name = ? AND age > ?'],
    ['SELECT * FROM users WHERE id = $1', 'SELECT * FROM users WHERE id = $1'],
    ['SELECT * FROM t1 JOIN t2 ON t1.id = t2.t1_id', 'SELECT * FROM t1 JOIN t2 ON t1.id = t2.t1_id'],
    ['SELECT * FROM users WHERE id IN (1, 2, 3)', 'SELECT * FROM users WHERE id IN (?)'],
    ['SELECT * FROM users WHERE id IN ($1, $2, $3)', 'SELECT * FROM users WHERE id IN (?)'],
    ['INSERT INTO t (a, b) VALUES (1, 2), (3, 4)', 'INSERT INTO t (a, b) VALUES (?)'],
    ['INSERT INTO t (a) VALUES (1), (2), (3)', 'INSERT INTO t (a) VALUES (?)'],
    ['SELECT  *\n  FROM users\tWHERE id = 7 ', 'SELECT * FROM users WHERE id = ?'],
    ['get user:42', 'get user:?'],
    ['set rb-test:7 [1 other arguments]', 'set rb-test:? [? other arguments]'],
    ['SELECT 1e10, 0.5', 'SELECT ?, ?'],
    ['SELECT * FROM "table 2" JOIN `events-2024` ON x = 3', 'SELECT * FROM "table 2" JOIN `events-2024` ON x = ?'],
    ['UPDATE t SET a = -5 WHERE b = 5', 'UPDATE t SET a = ? WHERE b = ?'],
    ['SELECT a - 1 FROM t', 'SELECT a - ? FROM t'],
    ['SELECT 0xDEADBEEF, .5, 5.', 'SELECT ?, ?, ?'],
    ["SELECT * FROM t WHERE a = 'O\\'Brien' AND b = 5", 'SELECT * FROM t WHERE a = ? AND b = ?'],
    ['SELECT * FROM t WHERE id IN ($1)', 'SELECT * FROM t WHERE id IN (?)'],
    ["SELECT * FROM t WHERE at > '2026-11-22 03:00:00'", 'SELECT * FROM t WHERE at > ?'],
  ])('%j → %j', (statement, expected) => {
    expect(fingerprintStatement(statement)).toBe(expected);
  });

  it('fingerprints only the first 4096 characters of a huge statement', () => {
    const huge = `SELECT ${'a, '.repeat(5000)}b FROM t`;
    expect(fingerprintStatement(huge)).toBe(`SELECT ${'a, '.repeat(1363)}`.trimEnd());
  });
});

describe('FingerprintCache', () => {
  it('returns the same fingerprint as the function, and starts over when full', () => {
    const cache = new FingerprintCache(2);
    expect(cache.get('SELECT 1')).toBe('SELECT ?');
    expect(cache.get('SELECT 1')).toBe('SELECT ?');
    expect(cache.get('SELECT 2')).toBe('SELECT ?');
    expect(cache.size).toBe(2);
    // Full, having answered 1 lookup in 4 (this one counted): it starts over with the new statement.
    expect(cache.get("SELECT 'x'")).toBe('SELECT ?');
    expect(cache.size).toBe(1);
  });

  it('rests when it fills without paying (statements with inlined literals), then tries again', () => {
    const cache = new FingerprintCache(100);
    for (let id = 0; id < 100; id += 1) expect(cache.get(`SELECT * FROM users WHERE id = ${id}`)).toBe('SELECT * FROM users WHERE id = ?');
    expect(cache.size).toBe(100);
    // Full after 100 lookups and no hit: it lets go and fingerprints the next 800 directly.
    expect(cache.get('SELECT * FROM users WHERE id = 100')).toBe('SELECT * FROM users WHERE id = ?');
    expect(cache.size).toBe(0);
    for (let id = 0; id < 800; id += 1) expect(cache.get(`SELECT * FROM orders WHERE id = ${id}`)).toBe('SELECT * FROM orders WHERE id = ?');
    expect(cache.size).toBe(0);
    expect(cache.get('SELECT 1')).toBe('SELECT ?');
    expect(cache.size).toBe(1);
  });

  it('pays, at the fill, with hits × 8 ≥ lookups (the filling one counted)', () => {
    const fill = (hits: number) => {
      const cache = new FingerprintCache(8);
      for (let id = 0; id < 8; id += 1) cache.get(`SELECT ${id} FROM t`);
      for (let hit = 0; hit < hits; hit += 1) cache.get('SELECT 0 FROM t');
      cache.get('SELECT 8 FROM t'); // fills it: 8 + hits + 1 lookups
      return cache.size;
    };
    // 2 hits in 11 lookups pay (16 ≥ 11): it starts over with the new statement.
    expect(fill(2)).toBe(1);
    // 1 hit in 10 does not (8 < 10): it rests, remembering nothing.
    expect(fill(1)).toBe(0);
  });

  it('keeps remembering while one lookup in 8 or more is a hit', () => {
    const cache = new FingerprintCache(100);
    const sizes = new Set<number>();
    // One lookup in 4 is the repeated statement: it fills and starts over five times, never resting.
    for (let lookup = 0; lookup < 800; lookup += 1) {
      cache.get(lookup % 4 === 0 ? 'SELECT 1' : `SELECT * FROM t WHERE id = ${lookup}`);
      sizes.add(cache.size);
    }
    expect(sizes.has(0)).toBe(false);
    expect(Math.max(...sizes)).toBe(100);
  });

  it('does not keep statements longer than it fingerprints', () => {
    const cache = new FingerprintCache();
    expect(cache.get(`INSERT INTO t VALUES ${'(1),'.repeat(2000)}(2)`)).toBe('INSERT INTO t VALUES (?)');
    expect(cache.size).toBe(0);
  });
});

describe('needsWhitespacePass', () => {
  it('finds what /[^\\S ]|\\s\\s/ finds: any white space but a single space, or two in a row', () => {
    const regex = /[^\S ]|\s\s/;
    // Every white space character JavaScript knows (ASCII and not), among ordinary ones.
    const alphabet = [
      ' ',
      'a',
      '1',
      '(',
      "'",
      '\t',
      '\n',
      '\v',
      '\f',
      '\r',
      '\u00a0',
      '\u1680',
      '\u2000',
      '\u2028',
      '\u3000',
      '\ufeff',
      'é',
      '\u200b',
      '\ud83d',
    ];
    let seed = 7;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % alphabet.length;
    const disagreeing: string[] = [];
    for (let sample = 0; sample < 20_000; sample += 1) {
      let text = '';
      for (let length = sample % 9; length > 0; length -= 1) text += alphabet[next()];
      if (needsWhitespacePass(text) !== regex.test(text)) disagreeing.push(JSON.stringify(text));
    }
    expect(disagreeing).toEqual([]);
    // Every UTF-16 code unit alone, and doubled.
    const units: number[] = [];
    for (let code = 0; code <= 0xffff; code += 1) {
      const unit = String.fromCharCode(code);
      if (needsWhitespacePass(unit) !== regex.test(unit) || needsWhitespacePass(unit + unit) !== regex.test(unit + unit)) units.push(code);
    }
    expect(units).toEqual([]);
    expect([needsWhitespacePass('SELECT a FROM t'), needsWhitespacePass('SELECT  a'), needsWhitespacePass('a\u00a0b')]).toEqual([false, true, true]);
  });
});
