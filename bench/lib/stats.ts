/**
 * Small statistics shared by the benchmarks: exact percentiles over recorded samples, medians over rounds, and the
 * rounding the result files use.
 */

/**
 * The `p`-th percentile of `sorted` by the nearest-rank method: the smallest sample such that at least p % of the
 * samples are at or below it (no interpolation, so the figure is a latency that was really observed).
 *
 * @param sorted samples in ascending order
 * @param p percentile, 0–100
 * @returns NaN when there are no samples
 */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** The median of `values` (the mean of the two middle values when their count is even); leaves `values` unsorted. */
export function median(values: number[]): number {
  const s = [...values].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** `n` rounded to 2 decimals (rates, CPU µs per request). */
export const round2 = (n: number): number => Math.round(n * 100) / 100;

/** `n` rounded to 3 decimals (latencies in ms, medians, ratios). */
export const round3 = (n: number): number => Math.round(n * 1000) / 1000;
