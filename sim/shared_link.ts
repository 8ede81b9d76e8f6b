/**
 * A network link whose bandwidth concurrent transfers share, on any clock.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";

/** A transfer on the link. */
interface Flow {
  remaining: number;
  resolve: () => void;
}

/** Options of {@linkcode SharedLink}. */
export interface SharedLinkOptions {
  /** The clock transfers take time on. */
  clock: Clock;
  /** Bytes per second of the whole link. */
  bandwidth: number;
  /**
   * A factor (0–1] applied to the bandwidth at a given time (a slow period),
   * and the next time the factor may change. Default: always 1.
   */
  factorAt?: (now: number) => { factor: number; until: number };
}

/** Transfers of less than this many bytes left are complete (float rounding). */
const EPSILON = 1e-3;

/**
 * A link of fixed bandwidth shared fairly by every transfer in progress
 * (processor sharing, as TCP flows on one bottleneck roughly are): alone, a
 * transfer of `n` bytes takes `n / bandwidth` seconds; two at once each get
 * half. Time is taken from the injected clock, so on a virtual clock the
 * sharing is exact and repeatable.
 *
 * @example Two transfers at once take twice as long as one
 * ```ts
 * import { SharedLink } from "./shared_link.ts";
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock();
 * const link = new SharedLink({ clock, bandwidth: 1_000_000 });
 * await clock.run(() => Promise.all([link.transfer(500_000), link.transfer(500_000)]));
 * console.log(clock.now()); // 1000
 * ```
 */
export class SharedLink {
  #clock: Clock;
  #bandwidth: number;
  #factorAt: (now: number) => { factor: number; until: number };
  #flows: Flow[] = [];
  #updatedAt = 0;
  #generation = 0;
  #bytes = 0;

  /** Makes an idle link. */
  constructor(options: SharedLinkOptions) {
    if (!(options.bandwidth > 0)) {
      throw new RangeError(`link bandwidth must be positive, not ${options.bandwidth}`);
    }
    this.#clock = options.clock;
    this.#bandwidth = options.bandwidth;
    this.#factorAt = options.factorAt ?? (() => ({ factor: 1, until: Infinity }));
  }

  /** How many transfers are in progress. */
  get active(): number {
    return this.#flows.length;
  }

  /** Bytes carried so far by finished transfers. */
  get bytesCarried(): number {
    return this.#bytes;
  }

  /** Carries `bytes` over the link; resolves when the last byte has been sent. */
  transfer(bytes: number): Promise<void> {
    if (bytes <= 0) return Promise.resolve();
    this.#progress();
    return new Promise((resolve) => {
      this.#flows.push({
        remaining: bytes,
        resolve: () => {
          this.#bytes += bytes;
          resolve();
        },
      });
      this.#schedule();
    });
  }

  /** Accounts the bytes sent by every flow since the last update. */
  #progress(): void {
    const now = this.#clock.now();
    const elapsed = (now - this.#updatedAt) / 1000;
    this.#updatedAt = now;
    if (elapsed <= 0 || this.#flows.length === 0) return;
    // The factor is constant since the last update: a wake-up is set at each change.
    const { factor } = this.#factorAt(now - elapsed * 1000);
    const share = (this.#bandwidth * factor * elapsed) / this.#flows.length;
    for (const flow of this.#flows) flow.remaining -= share;
  }

  /** Finishes the flows that are done and sets one wake-up for the next event. */
  #schedule(): void {
    const done = this.#flows.filter((f) => f.remaining <= EPSILON);
    if (done.length > 0) this.#flows = this.#flows.filter((f) => f.remaining > EPSILON);
    for (const flow of done) flow.resolve();
    if (this.#flows.length === 0) return;
    const now = this.#clock.now();
    const { factor, until } = this.#factorAt(now);
    let least = Infinity;
    for (const flow of this.#flows) least = Math.min(least, flow.remaining);
    const rate = (this.#bandwidth * Math.max(factor, 1e-9)) / this.#flows.length;
    const delay = Math.min((least / rate) * 1000, until - now);
    // A newer schedule supersedes this wake-up; the stale one then does nothing.
    const generation = ++this.#generation;
    this.#clock.sleep(Math.max(0, delay)).then(() => {
      if (generation !== this.#generation) return;
      this.#progress();
      this.#schedule();
    });
  }
}
