/**
 * Ratios between two configurations taken round by round: sample i of each comes from the same
 * interleaved round, so each pair saw the same state of a noisy shared machine. A ratio is then
 * reported as the median of the per-round ratios with their min and max (the spread).
 */

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** x[i][field] / y[i][field] for every round both have, dropping pairs with a zero denominator. */
export function perRoundRatios(xs, ys, field) {
  const ratios = [];
  for (let i = 0; i < Math.min(xs.length, ys.length); i += 1) {
    const ratio = xs[i][field] / ys[i][field];
    if (Number.isFinite(ratio)) ratios.push(ratio);
  }
  return ratios;
}

/** x[i][field] − y[i][field] for every round both have. */
export function perRoundDifferences(xs, ys, field) {
  const differences = [];
  for (let i = 0; i < Math.min(xs.length, ys.length); i += 1) differences.push(xs[i][field] - ys[i][field]);
  return differences;
}

/** { median, min, max, pairs }, undefined for no values. */
export function spread(values, digits = 3) {
  if (values.length === 0) return undefined;
  const round = (value) => Math.round(value * 10 ** digits) / 10 ** digits;
  return { median: round(median(values)), min: round(Math.min(...values)), max: round(Math.max(...values)), pairs: values.length };
}
