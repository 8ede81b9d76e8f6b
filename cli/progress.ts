/**
 * Progress of a long-running verb: a rate measured over a sliding window,
 * the terminal progress bar and the JSON progress line. Pure: the caller
 * passes the times, so tests need no clock.
 *
 * @module
 */

import { formatIoSize } from "./size.ts";

/** One observation of the work done. */
export interface ProgressSample {
  /** Milliseconds on a monotonic clock. */
  at: number;
  /** Bytes done at that time. */
  done: number;
}

/** How long the rate window looks back, in ms. */
export const RATE_WINDOW_MS = 3000;

/**
 * The rate over the last {@linkcode RATE_WINDOW_MS}: keeps the samples of the
 * window (at most one per call, so its size is bounded by the call rate).
 *
 * @example
 * ```ts
 * import { RateMeter } from "./progress.ts";
 * const meter = new RateMeter({ at: 0, done: 0 });
 * meter.add({ at: 1000, done: 1048576 });
 * console.log(meter.rate()); // 1048576
 * ```
 */
export class RateMeter {
  #samples: ProgressSample[];

  /** Starts measuring from `start`. */
  constructor(start: ProgressSample) {
    this.#samples = [start];
  }

  /** Records a sample and forgets those older than the window (keeping one to measure from). */
  add(sample: ProgressSample): void {
    this.#samples.push(sample);
    while (this.#samples.length > 2 && sample.at - this.#samples[1]!.at >= RATE_WINDOW_MS) {
      this.#samples.shift();
    }
  }

  /** Bytes per second over the window; 0 until time has passed. */
  rate(): number {
    const first = this.#samples[0]!;
    const last = this.#samples.at(-1)!;
    const ms = last.at - first.at;
    return ms > 0 ? ((last.done - first.done) * 1000) / ms : 0;
  }
}

/** A duration in seconds as `m:ss` or `h:mm:ss`; `--:--` when unknown. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Seconds left at `rate` bytes/s, or `null` when the rate is unknown. */
export function etaSeconds(done: number, total: number, rate: number): number | null {
  if (done >= total) return 0;
  return rate > 0 ? (total - done) / rate : null;
}

/** What one progress report holds. */
export interface ProgressState {
  /** Bytes done (copied or skipped). */
  done: number;
  /** Bytes in all. */
  total: number;
  /** Current rate in bytes/s. */
  rate: number;
  /** Milliseconds since the start. */
  elapsedMs: number;
}

/**
 * The progress bar line for a terminal (no newline; the caller prefixes `\r`).
 *
 * @example
 * ```ts
 * import { formatProgressBar } from "./progress.ts";
 * console.log(formatProgressBar({ done: 512, total: 1024, rate: 256, elapsedMs: 2000 }, 10));
 * // [#####-----]  50.0%  512 bytes / 1 KiB  256 bytes/s  ETA 0:02
 * ```
 */
export function formatProgressBar(state: ProgressState, width = 30): string {
  const fraction = state.total > 0 ? Math.min(1, state.done / state.total) : 1;
  const filled = Math.round(fraction * width);
  const bar = "#".repeat(filled) + "-".repeat(width - filled);
  const percent = (fraction * 100).toFixed(1).padStart(5);
  const eta = etaSeconds(state.done, state.total, state.rate);
  return `[${bar}] ${percent}%  ${formatIoSize(state.done)} / ${formatIoSize(state.total)}  ` +
    `${formatIoSize(state.rate)}/s  ETA ${formatDuration(eta)}`;
}

/** The fields of a `--output json` progress line (see `cli/stream.ts` for the document). */
export interface ProgressLine {
  /** `"progress"`. */
  event: "progress";
  /** Bytes done, copied or skipped (the job's `offset`). */
  offset: number;
  /** Bytes in all (the job's `len`). */
  len: number;
  /** Bytes per second over the last 3 s. */
  rate: number;
  /** Seconds left at that rate, or `null` when unknown. */
  eta: number | null;
  /** Seconds since the job started. */
  elapsed: number;
}

/** The JSON progress line for `state`. */
export function progressLine(state: ProgressState): ProgressLine {
  const eta = etaSeconds(state.done, state.total, state.rate);
  return {
    event: "progress",
    offset: state.done,
    len: state.total,
    rate: Math.round(state.rate),
    eta: eta === null ? null : Math.round(eta * 10) / 10,
    elapsed: Math.round(state.elapsedMs) / 1000,
  };
}
