/**
 * The strings span records share (interned-strings.ts): one copy each, counted, gone with the
 * last hold, its index reused.
 */
import { describe, expect, it } from 'vitest';
import { INTERNED_STRING_BYTES, InternedStrings, NO_STRING } from '../src/processor/interned-strings';

describe('interned strings', () => {
  it('keep one copy per string while any hold on it lasts, charged once, and reuse the index of one gone', () => {
    const strings = new InternedStrings();
    const select = strings.hold('SELECT ?');
    expect(strings.hold('SELECT ?')).toBe(select);
    const pg = strings.hold('postgresql');
    expect([strings.get(select), strings.get(pg), strings.size]).toEqual(['SELECT ?', 'postgresql', 2]);
    expect(strings.bytes).toBe(2 * INTERNED_STRING_BYTES + 'SELECT ?'.length + 'postgresql'.length);
    strings.release(select);
    expect(strings.get(select)).toBe('SELECT ?');
    strings.release(select);
    expect([strings.get(select), strings.size, strings.bytes]).toEqual([undefined, 1, INTERNED_STRING_BYTES + 'postgresql'.length]);
    expect(strings.hold('GET')).toBe(select);
  });

  it('give no index to no string, and keep thousands apart', () => {
    const strings = new InternedStrings();
    expect(strings.hold(undefined)).toBe(NO_STRING);
    strings.release(NO_STRING);
    const indexes = Array.from({ length: 5000 }, (_, index) => strings.hold(`fingerprint ${index}`));
    expect(new Set(indexes).size).toBe(5000);
    expect(indexes.every((index, at) => strings.get(index) === `fingerprint ${at}`)).toBe(true);
    for (const index of indexes) strings.release(index);
    expect([strings.size, strings.bytes]).toEqual([0, 0]);
  });
});
