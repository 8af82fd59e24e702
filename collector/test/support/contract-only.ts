import { CONTRACT_ATTRIBUTES } from '@request-budget/core';

/** A span's attributes as the collector reads them: the names of core's attribute contract only. */
export function contractOnly(map: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(map).filter(([key]) => CONTRACT_ATTRIBUTES.has(key)));
}
