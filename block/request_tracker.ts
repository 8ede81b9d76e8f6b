/**
 * In-flight request tracking with qemu's serialising rules.
 *
 * Every request on a node is registered while it runs. A *serialising*
 * request (a copy-on-read or stream copy, which reads the backing chain and
 * then writes the top) has its overlap range widened to cluster boundaries.
 * The rules, as in qemu's `block/io.c` (`qed-format.md` §13.1):
 *
 * - a serialising request waits for every overlapping request already in flight;
 * - an ordinary request waits only for overlapping serialising requests already in flight;
 * - so a later request overlapping a serialising one waits for it, and two
 *   ordinary requests never wait for each other, nor do unrelated ranges.
 *
 * Waiting only for requests that arrived *earlier* makes the wait graph
 * acyclic, so it cannot deadlock (qemu needs a "waiting for us" test instead).
 *
 * @module
 */

import { abortReason } from "../io/clock.ts";

/** A request registered with a {@linkcode RequestTracker}. */
export interface TrackedRequest {
  /** Start of the request in bytes. */
  readonly offset: number;
  /** Length of the request in bytes. */
  readonly length: number;
  /** Whether the request is serialising (copy-on-read or stream copy). */
  readonly serialising: boolean;
  /** Start of the range other requests are checked against (widened if serialising). */
  readonly overlapOffset: number;
  /** Length of the range other requests are checked against. */
  readonly overlapLength: number;
}

/** Options of {@linkcode RequestTracker.begin}. */
export interface TrackOptions {
  /** Make the request serialising. Default false. */
  serialising?: boolean;
  /** Widen a serialising request's overlap range to multiples of this (a cluster size). Default 1. */
  alignment?: number;
  /** Gives up waiting (the request is then not registered) when this aborts. */
  signal?: AbortSignal;
}

interface Entry extends TrackedRequest {
  end: number;
  done: Promise<void>;
  finish: () => void;
}

function overlaps(a: Entry, b: Entry): boolean {
  return a.overlapOffset < b.end && b.overlapOffset < a.end && a.overlapLength > 0 &&
    b.overlapLength > 0;
}

/**
 * Tracks the requests in flight on one node and makes conflicting ones wait.
 *
 * @example A copy-on-read copy holds off an overlapping guest write
 * ```ts
 * import { RequestTracker } from "./request_tracker.ts";
 * const tracker = new RequestTracker();
 * const copy = await tracker.begin(4096, 512, { serialising: true, alignment: 65536 });
 * const write = tracker.begin(0, 512); // same cluster: waits
 * tracker.end(copy);
 * tracker.end(await write);
 * ```
 */
export class RequestTracker {
  #entries = new Set<Entry>();

  /** The requests in flight, oldest first. */
  get inFlight(): readonly TrackedRequest[] {
    return [...this.#entries];
  }

  /**
   * Registers a request and resolves once every earlier conflicting request
   * has ended. The caller must {@linkcode RequestTracker.end} it.
   */
  async begin(offset: number, length: number, options: TrackOptions = {}): Promise<TrackedRequest> {
    const serialising = options.serialising ?? false;
    const align = serialising ? Math.max(1, options.alignment ?? 1) : 1;
    const overlapOffset = Math.floor(offset / align) * align;
    const end = length > 0 ? Math.ceil((offset + length) / align) * align : overlapOffset;
    let finish!: () => void;
    const done = new Promise<void>((resolve) => finish = resolve);
    const entry: Entry = {
      offset,
      length,
      serialising,
      overlapOffset,
      overlapLength: end - overlapOffset,
      end,
      done,
      finish,
    };
    const waitFor: Promise<void>[] = [];
    for (const other of this.#entries) {
      if ((other.serialising || serialising) && overlaps(other, entry)) waitFor.push(other.done);
    }
    this.#entries.add(entry);
    if (waitFor.length === 0) return entry;
    try {
      await waitAll(waitFor, options.signal);
    } catch (error) {
      this.end(entry);
      throw error;
    }
    return entry;
  }

  /** Ends a request, letting the requests that wait for it go on. */
  end(request: TrackedRequest): void {
    const entry = request as Entry;
    if (this.#entries.delete(entry)) entry.finish();
  }

  /** Runs `fn` as a tracked request: begin, run, end (also on failure). */
  async run<T>(
    offset: number,
    length: number,
    options: TrackOptions,
    fn: (request: TrackedRequest) => Promise<T>,
  ): Promise<T> {
    const request = await this.begin(offset, length, options);
    try {
      return await fn(request);
    } finally {
      this.end(request);
    }
  }
}

function waitAll(promises: Promise<void>[], signal: AbortSignal | undefined): Promise<void> {
  const all = Promise.all(promises).then(() => {});
  if (!signal) return all;
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    all.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}
