/** Byte sizes as budget files write them: a number of bytes, or `512KiB`, `8MiB`, `1.5GB`. */

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1000,
  KIB: 1024,
  MB: 1000 ** 2,
  MIB: 1024 ** 2,
  GB: 1000 ** 3,
  GIB: 1024 ** 3,
};
const SIZE = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i;

/** Bytes for a size, rounded down to a whole byte; undefined when it is not a size. */
export function parseByteSize(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  const match = SIZE.exec(value);
  if (match === null) return undefined;
  const unit = UNITS[(match[2] || 'B').toUpperCase()];
  return unit === undefined ? undefined : Math.floor(Number(match[1]) * unit);
}
