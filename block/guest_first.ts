/**
 * Guest-first scheduling: guest reads that miss the overlay go to the
 * backing source ahead of a stream's queued copies.
 *
 * qemu gives a stream's prefetch reads and the guest's reads one priority:
 * with several stream chunks in flight on the one connection to a remote
 * template, a guest read that misses waits behind them. A
 * {@linkcode GuestFirstScheduler} attached to a top node
 * ({@linkcode attachGuestFirst}) sits in front of that path on every device
 * over the node:
 *
 * - a guest read that is not wholly allocated in the top, or a write that
 *   starts or ends inside a cluster the top lacks (the driver fills the
 *   rest of the cluster from the backing), is a *guest miss*;
 *   while one is pending, no stream copy starts (those already sent finish);
 * - while the guest is *active* (a miss pending, or any guest I/O less than
 *   `idleMs` ago) at most `busyParallel` stream copies are in flight, so a
 *   new miss queues behind at most that many;
 * - a copy that waited `maxWaitMs` passes pending misses, still within
 *   `busyParallel` (a stream always progresses);
 * - `adaptive`: when a guest miss takes longer than `targetLatencyMs` the
 *   stream's rate is halved (from the measured rate when unlimited), down to
 *   `minRate`; each `idleMs` without guest I/O doubles it, back to unlimited
 *   above `maxRate`.
 *
 * Gating happens before a copy enters the request tracker, so it never
 * holds a serialising request and cannot deadlock with a guest read waiting
 * for one.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import type { BlockNode } from "./node.ts";
import { RateLimit } from "./rate_limit.ts";

/** The adaptive mode of a {@linkcode GuestFirstScheduler}. */
export interface AdaptiveRateOptions {
  /** Guest miss latency above which the stream slows down, in ms. */
  targetLatencyMs: number;
  /** The lowest rate in bytes per second. Default 1 MiB/s. */
  minRate?: number;
  /** Above this rate (bytes per second) the stream is unlimited again. Default 1 GiB/s. */
  maxRate?: number;
}

/** Options of {@linkcode GuestFirstScheduler}. */
export interface GuestFirstOptions {
  /** The clock for idle windows, waits and the adaptive rate. */
  clock: Clock;
  /** Stream copies in flight while the guest is active. Default 1. */
  busyParallel?: number;
  /** How long after its last I/O the guest still counts as active, in ms. Default 50. */
  idleMs?: number;
  /** Longest wait of one stream copy, in ms. Default 2000. */
  maxWaitMs?: number;
  /** Lower the stream's rate while guest misses are slow. Default off. */
  adaptive?: AdaptiveRateOptions;
}

/** Counters of a {@linkcode GuestFirstScheduler}. */
export interface GuestFirstStats {
  /** Guest reads that missed the top. */
  guestMisses: number;
  /** Stream copies that had to wait. */
  streamWaits: number;
  /** Stream copies let through by the `maxWaitMs` bound. */
  forcedCopies: number;
  /** Times the adaptive rate was lowered. */
  rateDecreases: number;
  /** Times the adaptive rate was raised. */
  rateIncreases: number;
  /** The adaptive rate now, bytes per second (0 = unlimited). */
  rate: number;
}

interface Waiter {
  since: number;
  go: () => void;
  forced: boolean;
}

const schedulers = new WeakMap<BlockNode, GuestFirstScheduler>();

/** Attaches `scheduler` to `top` (every device on it) until the returned function is called. */
export function attachGuestFirst(top: BlockNode, scheduler: GuestFirstScheduler): () => void {
  schedulers.set(top, scheduler);
  return () => {
    if (schedulers.get(top) === scheduler) schedulers.delete(top);
  };
}

/** The scheduler attached to `top`, if any. */
export function guestFirstOf(top: BlockNode): GuestFirstScheduler | undefined {
  return schedulers.get(top);
}

/**
 * Orders the guest's misses before a stream's copies (see the module
 * documentation).
 *
 * @example
 * ```ts ignore
 * const scheduler = new GuestFirstScheduler({ clock, adaptive: { targetLatencyMs: 40 } });
 * const job = startStream(jobs, device, { guestFirst: scheduler });
 * ```
 */
export class GuestFirstScheduler {
  readonly #clock: Clock;
  readonly #busyParallel: number;
  readonly #idleMs: number;
  readonly #maxWaitMs: number;
  readonly #adaptive: Required<AdaptiveRateOptions> | undefined;
  readonly #limit: RateLimit;
  #pending = 0;
  #lastGuestIo = -Infinity;
  #inFlight = 0;
  #waiters: Waiter[] = [];
  #timer = 0;
  #nextCopyAt = 0;
  #recent: [number, number][] = [];
  #lastDecrease = -Infinity;
  #rate = 0;
  #stats: GuestFirstStats = {
    guestMisses: 0,
    streamWaits: 0,
    forcedCopies: 0,
    rateDecreases: 0,
    rateIncreases: 0,
    rate: 0,
  };

  /** Makes a scheduler. */
  constructor(options: GuestFirstOptions) {
    this.#clock = options.clock;
    this.#busyParallel = Math.max(1, options.busyParallel ?? 1);
    this.#idleMs = Math.max(0, options.idleMs ?? 50);
    this.#maxWaitMs = Math.max(0, options.maxWaitMs ?? 2000);
    const a = options.adaptive;
    this.#adaptive = a && {
      targetLatencyMs: a.targetLatencyMs,
      minRate: a.minRate ?? 1024 * 1024,
      maxRate: a.maxRate ?? 1024 * 1024 * 1024,
    };
    this.#limit = new RateLimit(this.#clock);
  }

  /** Counters (a copy). */
  get stats(): GuestFirstStats {
    return { ...this.#stats, rate: this.#rate };
  }

  /** Whether the guest counts as active now. */
  get guestActive(): boolean {
    return this.#pending > 0 || this.#clock.now() - this.#lastGuestIo < this.#idleMs;
  }

  /**
   * Runs a guest request: a miss (`miss` true: it reads the backing, as a
   * read or a partial-cluster write of what the top lacks does) is pending
   * while `fn` runs and holds stream copies back; its latency feeds the
   * adaptive rate.
   */
  async guestIo<T>(miss: boolean, fn: () => Promise<T>): Promise<T> {
    const start = this.#clock.now();
    this.#lastGuestIo = start;
    if (!miss) {
      try {
        return await fn();
      } finally {
        this.#lastGuestIo = this.#clock.now();
        this.#wakeLater(this.#idleMs);
      }
    }
    this.#stats.guestMisses++;
    this.#pending++;
    try {
      return await fn();
    } finally {
      this.#pending--;
      const now = this.#clock.now();
      this.#lastGuestIo = now;
      this.#observe(now - start);
      this.#pump();
      this.#wakeLater(this.#idleMs);
    }
  }

  /** Runs a stream copy of `bytes` once the guest lets it (see the module documentation). */
  async streamCopy<T>(bytes: number, fn: () => Promise<T>): Promise<T> {
    if (!this.#mayStart()) {
      this.#stats.streamWaits++;
      const waiter: Waiter = { since: this.#clock.now(), go: () => {}, forced: false };
      await new Promise<void>((resolve) => {
        waiter.go = resolve;
        this.#waiters.push(waiter);
        this.#wakeLater(this.#maxWaitMs);
      });
      if (waiter.forced) this.#stats.forcedCopies++;
    } else {
      this.#inFlight++;
    }
    // From here the copy holds a slot (taken by #pump for a waiter).
    try {
      const wait = this.#nextCopyAt - this.#clock.now();
      if (wait > 0) await this.#clock.sleep(wait);
      if (this.#rate > 0) this.#nextCopyAt = this.#clock.now() + this.#limit.delayFor(bytes);
      return await fn();
    } finally {
      this.#inFlight--;
      this.#noteCopied(bytes);
      this.#pump();
    }
  }

  #mayStart(): boolean {
    if (this.#pending > 0) return false;
    return !this.guestActive || this.#inFlight < this.#busyParallel;
  }

  /** Lets waiting copies go, oldest first, while allowed (or overdue). */
  #pump(): void {
    const now = this.#clock.now();
    while (this.#waiters.length > 0) {
      const w = this.#waiters[0]!;
      // An overdue copy may pass a pending miss, but never the busy bound.
      const forced = !this.#mayStart() && now - w.since >= this.#maxWaitMs &&
        this.#inFlight < this.#busyParallel;
      if (!forced && !this.#mayStart()) break;
      this.#waiters.shift();
      w.forced = forced;
      // The slot is taken here, so the loop sees it before the waiter runs.
      this.#inFlight++;
      w.go();
    }
    this.#maybeRaise(now);
  }

  /** One wake-up `ms` from now (the latest asked wins; each pump re-arms as needed). */
  #wakeLater(ms: number): void {
    const generation = ++this.#timer;
    void this.#clock.sleep(ms + 0.001).then(() => {
      if (generation !== this.#timer) return;
      this.#pump();
      if (this.#waiters.length > 0 || (this.#adaptive && this.#rate > 0)) {
        this.#wakeLater(Math.max(1, Math.min(this.#idleMs, this.#maxWaitMs)));
      }
    });
  }

  #noteCopied(bytes: number): void {
    const now = this.#clock.now();
    this.#recent.push([now, bytes]);
    while (this.#recent.length > 0 && now - this.#recent[0]![0] > 1000) this.#recent.shift();
  }

  #observe(latencyMs: number): void {
    const a = this.#adaptive;
    if (!a || latencyMs <= a.targetLatencyMs) return;
    const now = this.#clock.now();
    // One decrease per target-latency period: a burst of slow reads is one signal.
    if (now - this.#lastDecrease < a.targetLatencyMs) return;
    this.#lastDecrease = now;
    let measured = 0;
    for (const [, b] of this.#recent) measured += b;
    const from = this.#rate > 0 ? this.#rate : Math.max(measured, a.minRate * 2);
    this.#setRate(Math.max(a.minRate, Math.floor(from / 2)));
    this.#stats.rateDecreases++;
  }

  #maybeRaise(now: number): void {
    const a = this.#adaptive;
    if (!a || this.#rate === 0 || this.#pending > 0) return;
    if (now - this.#lastGuestIo < this.#idleMs || now - this.#lastDecrease < this.#idleMs) return;
    this.#lastDecrease = now; // one doubling per idle period
    const next = this.#rate * 2;
    this.#setRate(next > a.maxRate ? 0 : next);
    this.#stats.rateIncreases++;
  }

  #setRate(rate: number): void {
    this.#rate = rate;
    this.#limit.setSpeed(rate);
    if (rate === 0) this.#nextCopyAt = 0;
  }
}
