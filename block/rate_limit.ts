/**
 * qemu's rate limiter (`include/qemu/ratelimit.h`) for block jobs.
 *
 * Time is cut into slices (100 ms for block jobs, `BLOCK_JOB_SLICE_TIME`);
 * each slice may dispatch `max(speed × slice, 1)` bytes (truncated). When a
 * dispatch takes the slice over its quota, the slice is stretched to
 * `slice start + dispatched / quota × slice` and the caller must wait until
 * then. Changing the speed keeps the current slice's accounting, as qemu does.
 * The arithmetic is done in integer nanoseconds like qemu's.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";

/** qemu's block-job slice length in nanoseconds (100 ms). */
export const BLOCK_JOB_SLICE_NS = 100_000_000;

/**
 * A slice-based byte rate limiter on an injected clock.
 *
 * @example 1 MiB/s: a 512 KiB chunk buys half a second
 * ```ts
 * import { RateLimit } from "./rate_limit.ts";
 * import { VirtualClock } from "../sim/virtual_clock.ts";
 * const limit = new RateLimit(new VirtualClock());
 * limit.setSpeed(1048576);
 * console.log(Math.round(limit.delayFor(524288))); // 500 (ms)
 * ```
 */
export class RateLimit {
  readonly #clock: Clock;
  #sliceNs: number;
  #quota = 0;
  #sliceStart = 0;
  #sliceEnd = 0;
  #dispatched = 0;

  /** Makes an unlimited limiter on `clock` with `sliceNs` slices (default 100 ms). */
  constructor(clock: Clock, sliceNs: number = BLOCK_JOB_SLICE_NS) {
    this.#clock = clock;
    this.#sliceNs = sliceNs;
  }

  /** The bytes one slice may dispatch; 0 when unlimited. */
  get sliceQuota(): number {
    return this.#quota;
  }

  /** Sets the speed in bytes per second; 0 = unlimited. Keeps the current slice's accounting. */
  setSpeed(bytesPerSecond: number): void {
    this.#quota = bytesPerSecond === 0
      ? 0
      : Math.max(Math.trunc(bytesPerSecond * this.#sliceNs / 1e9), 1);
  }

  /**
   * Accounts `bytes` just dispatched and returns how long to wait before the
   * next dispatch, in milliseconds (0 = go on at once).
   */
  delayFor(bytes: number): number {
    if (this.#quota === 0) return 0;
    const now = Math.round(this.#clock.now() * 1e6);
    if (this.#sliceEnd < now) {
      this.#sliceStart = now;
      this.#sliceEnd = now + this.#sliceNs;
      this.#dispatched = 0;
    }
    this.#dispatched += bytes;
    if (this.#dispatched < this.#quota) return 0;
    const slices = this.#dispatched / this.#quota;
    this.#sliceEnd = this.#sliceStart + Math.trunc(slices * this.#sliceNs);
    return (this.#sliceEnd - now) / 1e6;
  }
}
