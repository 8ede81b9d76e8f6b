/**
 * qemu's monitor event throttling: some events are sent at most once per
 * period for each key; one arriving inside the period is held back, a later
 * one replaces it, and the one held back is sent (with the timestamp it was
 * stamped with) when the period ends, which starts a new period.
 *
 * ```
 * time  0 ─────────── 1 s ─────────── 2 s ─────────── 3 s
 * emit  A     B   C                      D
 * sent  A             C (at 1 s)         D (at 2 s)
 * ```
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";

/** How one event is throttled: its period and the data member that keys it. */
export interface EventThrottleRule {
  /** The period in milliseconds. */
  periodMs: number;
  /** The data member whose value keys the throttle (one period per value); none = one for the event. */
  key?: string;
}

/**
 * The throttled events qemu-storage-daemon 7.2 can send (qemu throttles some
 * system-emulator events too; qsd has none of them). Verified against qsd:
 * two `QUORUM_REPORT_BAD` of one child within a second are sent a second
 * apart, two of different children at once.
 */
export const QMP_EVENT_THROTTLE: Readonly<Record<string, EventThrottleRule>> = {
  QUORUM_REPORT_BAD: { periodMs: 1000, key: "node-name" },
  QUORUM_FAILURE: { periodMs: 1000 },
};

/** The state of one throttled key: the event held back, if any. */
interface Period {
  held: Uint8Array | undefined;
}

/**
 * Decides, per event, whether to send it now or hold it back.
 *
 * @example
 * ```ts
 * import { EventThrottle } from "./event_throttle.ts";
 * import { systemClock } from "../io/clock.ts";
 * const sent: string[] = [];
 * const throttle = new EventThrottle(systemClock, (b) => sent.push(new TextDecoder().decode(b)));
 * const bytes = (s: string) => new TextEncoder().encode(s);
 * throttle.offer("QUORUM_FAILURE", {}, bytes("A"));
 * throttle.offer("QUORUM_FAILURE", {}, bytes("B")); // held back for up to a second
 * console.log(sent); // [ "A" ]
 * throttle.close();
 * ```
 */
export class EventThrottle {
  readonly #clock: Clock;
  readonly #send: (bytes: Uint8Array) => void;
  readonly #rules: Readonly<Record<string, EventThrottleRule>>;
  readonly #periods = new Map<string, Period>();
  readonly #abort = new AbortController();

  /** Sends through `send`, timing periods on `clock`; `rules` default to {@linkcode QMP_EVENT_THROTTLE}. */
  constructor(
    clock: Clock,
    send: (bytes: Uint8Array) => void,
    rules: Readonly<Record<string, EventThrottleRule>> = QMP_EVENT_THROTTLE,
  ) {
    this.#clock = clock;
    this.#send = send;
    this.#rules = rules;
  }

  /** Sends the encoded event `bytes` now, or holds it back if its key is inside a period. */
  offer(event: string, data: Record<string, unknown> | undefined, bytes: Uint8Array): void {
    const rule = this.#rules[event];
    if (!rule || this.#abort.signal.aborted) return void this.#send(bytes);
    const key = `${event}\0${rule.key === undefined ? "" : String(data?.[rule.key])}`;
    const period = this.#periods.get(key);
    if (period) {
      period.held = bytes;
      return;
    }
    this.#send(bytes);
    this.#start(key, rule.periodMs);
  }

  /** Drops every event held back and stops the timers (qemu drops them when it exits). */
  close(): void {
    this.#abort.abort();
    this.#periods.clear();
  }

  #start(key: string, periodMs: number): void {
    const period: Period = { held: undefined };
    this.#periods.set(key, period);
    this.#clock.sleep(periodMs, this.#abort.signal).then(() => {
      this.#periods.delete(key);
      if (period.held === undefined) return;
      this.#send(period.held);
      this.#start(key, periodMs);
    }, () => {/* closed */});
  }
}
