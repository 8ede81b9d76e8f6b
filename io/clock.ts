/**
 * The clock interface for everything that waits or timestamps.
 *
 * Nothing outside the system adapters calls `Date.now`, `setTimeout` or
 * `performance.now`: the streaming engine's rate limit, the remote's latency
 * and QMP event timestamps all take a {@linkcode Clock}, so the simulator can
 * substitute a virtual one that runs minutes in milliseconds.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** The reason a sleep ends early when its signal aborts. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/** A source of time and of waiting. */
export interface Clock {
  /** Monotonic time in milliseconds (fractions allowed), from an arbitrary origin. */
  now(): number;
  /** Wall-clock time in milliseconds since the Unix epoch, for timestamps. */
  wallTime(): number;
  /**
   * Resolves after `ms` milliseconds of this clock's time; rejects with the
   * signal's reason as soon as `signal` aborts.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /**
   * Lets the rest of the program run before continuing: the event loop
   * (sockets, timers, finished I/O), for the system clock. Absent (a
   * virtual clock): a microtask yield, which keeps a simulation's idle
   * detection exact.
   */
  yieldNow?(): Promise<void>;
}

/**
 * The real clock of the machine.
 *
 * @example
 * ```ts
 * import { systemClock } from "./clock.ts";
 * const start = systemClock.now();
 * await systemClock.sleep(1);
 * console.log(systemClock.now() - start >= 0); // true
 * ```
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  // Microsecond resolution, as qemu stamps its events.
  wallTime: () => performance.timeOrigin + performance.now(),
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(abortReason(signal!));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, Math.max(0, ms));
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  },
  // setImmediate runs after pending I/O callbacks; setTimeout(0) would cost ~2 ms (clamped).
  yieldNow: () => new Promise<void>((resolve) => setImmediate(resolve)),
};
