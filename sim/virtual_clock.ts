/**
 * A deterministic clock whose time moves only when every task waits.
 *
 * @module
 */

import { abortReason, type Clock } from "../io/clock.ts";
import { setImmediate } from "node:timers";
import { QedstreamError } from "../io/error.ts";

/** A sleeper waiting for its deadline. */
interface Timer {
  at: number;
  seq: number;
  resolve: () => void;
}

/** Options of {@linkcode VirtualClock}. */
export interface VirtualClockOptions {
  /** The monotonic time to start at, in ms. Default 0. */
  start?: number;
  /** The wall-clock time that monotonic time 0 maps to, in epoch ms. Default 2026-01-01T00:00:00Z. */
  epoch?: number;
}

/** Options of {@linkcode VirtualClock.run}. */
export interface RunOptions {
  /** Fail if virtual time would pass this many ms after the start of the run. Default: no limit. */
  limit?: number;
}

/** Thrown by {@linkcode VirtualClock.run} when nothing can progress or the limit is passed. */
export class VirtualClockError extends QedstreamError {}

/**
 * Lets every queued microtask (and the tasks they start) run to a wait.
 *
 * A macrotask boundary is enough, since in-memory work settles in microtasks.
 * `setImmediate` rather than `setTimeout(0)`: nested zero timeouts are clamped
 * (about 2 ms each here), which made every virtual timer cost real time.
 */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A {@linkcode Clock} for simulations: `sleep` registers a timer, and
 * {@linkcode VirtualClock.run} (or {@linkcode VirtualClock.advance}) moves
 * time to the next deadline only once every task is waiting. Timers with the
 * same deadline fire in the order they were set, so a run repeats exactly.
 *
 * Work must wait only on this clock or on promises that settle without real
 * I/O (in-memory storage): real I/O is not waited for when deciding that
 * everything is idle.
 *
 * @example Minutes of simulated time in milliseconds
 * ```ts
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock();
 * const elapsed = await clock.run(async () => {
 *   await clock.sleep(60_000);
 *   return clock.now();
 * });
 * console.log(elapsed); // 60000
 * ```
 */
export class VirtualClock implements Clock {
  #now: number;
  #epoch: number;
  #seq = 0;
  #timers: Timer[] = [];

  /** Makes a clock at `options.start` (default 0). */
  constructor(options: VirtualClockOptions = {}) {
    this.#now = options.start ?? 0;
    this.#epoch = options.epoch ?? Date.UTC(2026, 0, 1);
  }

  now(): number {
    return this.#now;
  }

  wallTime(): number {
    return this.#epoch + this.#now;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise((resolve, reject) => {
      const timer: Timer = {
        at: this.#now + Math.max(0, ms),
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#timers = this.#timers.filter((t) => t !== timer);
        reject(abortReason(signal!));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#insert(timer);
    });
  }

  /** How many sleepers are waiting. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** The deadline of the earliest sleeper, or `undefined`. */
  get nextDeadline(): number | undefined {
    return this.#timers[0]?.at;
  }

  /**
   * Moves time forward by `ms`, firing every timer due on the way in order
   * and letting the woken tasks run before the next one fires.
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + Math.max(0, ms);
    await settle();
    while (this.#timers.length > 0 && this.#timers[0]!.at <= target) {
      this.#fireNext();
      await settle();
    }
    this.#now = target;
  }

  /**
   * Runs `main` to completion, jumping time to the next deadline whenever
   * every task waits. Fails if nothing is left to wake while `main` has not
   * finished (a deadlock), or if `options.limit` is passed.
   */
  async run<T>(main: () => Promise<T>, options: RunOptions = {}): Promise<T> {
    const start = this.#now;
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    main().then(
      (value) => outcome = { ok: true, value },
      (error) => outcome = { ok: false, error },
    );
    for (;;) {
      await settle();
      if (outcome) {
        if (outcome.ok) return outcome.value;
        throw outcome.error;
      }
      const next = this.#timers[0];
      if (!next) {
        throw new VirtualClockError(
          "VIRTUAL_CLOCK_DEADLOCK",
          `Virtual clock at ${this.#now} ms: every task waits and no timer is set`,
        );
      }
      if (options.limit !== undefined && next.at - start > options.limit) {
        throw new VirtualClockError(
          "VIRTUAL_CLOCK_LIMIT",
          `Virtual clock passed its limit of ${options.limit} ms`,
        );
      }
      this.#fireNext();
    }
  }

  #fireNext(): void {
    const timer = this.#timers.shift()!;
    this.#now = Math.max(this.#now, timer.at);
    timer.resolve();
  }

  #insert(timer: Timer): void {
    // Sorted by deadline, then by the order the timers were set.
    let lo = 0;
    let hi = this.#timers.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const t = this.#timers[mid]!;
      if (t.at < timer.at || (t.at === timer.at && t.seq < timer.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.#timers.splice(lo, 0, timer);
  }
}
