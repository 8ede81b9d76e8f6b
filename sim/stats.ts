/**
 * Percentiles and summaries of latency samples.
 *
 * @module
 */

/** A summary of a set of samples (all `0` when there are none). */
export interface Summary {
  /** How many samples. */
  count: number;
  /** The smallest sample. */
  min: number;
  /** The arithmetic mean. */
  mean: number;
  /** The median. */
  p50: number;
  /** The 90th percentile. */
  p90: number;
  /** The 99th percentile. */
  p99: number;
  /** The largest sample. */
  max: number;
}

/**
 * The `p`-th percentile (0–100) of samples sorted ascending, by the
 * nearest-rank method (always one of the samples); `0` when there are none.
 *
 * @example
 * ```ts
 * import { percentile } from "./stats.ts";
 * console.log(percentile([1, 2, 3, 4], 50)); // 2
 * ```
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((Math.min(100, Math.max(0, p)) / 100) * sorted.length);
  return sorted[Math.max(0, rank - 1)]!;
}

/**
 * Summarises samples: count, min, mean, p50, p90, p99, max.
 *
 * @example
 * ```ts
 * import { summarize } from "./stats.ts";
 * console.log(summarize([3, 1, 2]).p50); // 2
 * ```
 */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  const sorted = [...samples].sort((a, b) => a - b);
  let sum = 0;
  for (const s of sorted) sum += s;
  return {
    count: sorted.length,
    min: sorted[0]!,
    mean: sum / sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1]!,
  };
}
