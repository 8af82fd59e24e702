/**
 * Untyped values (span attributes, fields of a library's objects) as text for a line, a label or
 * a string attribute. Only scalars have a text worth showing: an object, an array or null would
 * come out as `[object Object]`, `a,b` or `null`, so they are left to the caller's fallback.
 */

/** `value` as text when it is a string, number, boolean or bigint; otherwise undefined. */
export function stringAttribute(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return undefined;
}
