import { describe, expect, it } from 'vitest';
import { compileGlob } from '../src/glob';
import { compileJobPattern, compileRoutePattern } from '../src/rule-pattern';

describe('compileGlob', () => {
  it.each([
    ['SELECT * FROM users WHERE id = ?', 'SELECT * FROM users WHERE id = ?', true],
    ['SELECT * FROM users*', 'SELECT * FROM users WHERE id = ?', true],
    ['*FROM audit*', 'INSERT INTO x SELECT 1 FROM audit_log', true],
    ['*FROM audit*', 'SELECT 1 FROM users', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYcZ', false],
    ['', '', true],
    ['*', '', true],
  ])('%j matches %j: %s', (pattern, text, expected) => {
    expect(compileGlob(pattern)(text)).toBe(expected);
  });

  it('stops a single star at the given character; a double star crosses it', () => {
    const single = compileGlob('email.*', { starStopsAt: '.' });
    const double = compileGlob('email.**', { starStopsAt: '.' });
    expect([single('email.send'), single('email.send.bulk'), double('email.send.bulk'), double('email.')]).toEqual([true, false, true, true]);
  });
});

// Patterns and texts an attacker (or an unlucky budget file) controls: backtracking matchers
// take seconds to years on these; the automaton takes one pass.
describe('adversarial inputs of 100 KB finish in milliseconds', () => {
  const text = 'a'.repeat(100_000);
  const within = (ms: number, fn: () => unknown) => {
    const start = performance.now();
    const result = fn();
    return { result, fast: performance.now() - start < ms };
  };

  it('allowRepeated-style globs with many stars', () => {
    const pattern = `${'*a'.repeat(30)}*b`;
    expect(within(1000, () => compileGlob(pattern)(text))).toEqual({ result: false, fast: true });
  });

  it('route patterns with several globstars against a 100 KB route', () => {
    const route = `/${Array.from({ length: 20_000 }, () => 'x').join('/')}/y`;
    const pattern = compileRoutePattern('GET /**/x/**/x/**/x/**/z');
    expect(within(1000, () => pattern.matches('GET', route))).toEqual({ result: false, fast: true });
  });

  it('job patterns with alternating wildcards', () => {
    const pattern = compileJobPattern(`${'**a'.repeat(20)}.b`);
    expect(within(1000, () => pattern.matches(text))).toEqual({ result: false, fast: true });
  });
});
