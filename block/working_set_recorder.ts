/**
 * Records a guest's working set: every range read from a backing node, in
 * first-touch order, each byte once.
 *
 * Wrap the node under the overlay (the template) with
 * {@linkcode WorkingSetRecorder.wrap}, or attach the recorder to the overlay
 * ({@linkcode attachWorkingSetRecorder}: guest reads through any device on it
 * record what the overlay lacks), boot the guest, then
 * {@linkcode WorkingSetRecorder.stop} and
 * {@linkcode WorkingSetRecorder.finish} (which fingerprints the template) and
 * encode the result with `encodeWorkingSet`. Record without a stream job
 * running: its prefetch reads go through the same node and would be recorded
 * too.
 *
 * @module
 */

import { type BlockNode, forwardingNode } from "./node.ts";
import { RangeSet } from "./_range_set.ts";
import { type FingerprintSource, templateFingerprint } from "./template_fingerprint.ts";
import type { ByteRange, WorkingSet } from "./working_set.ts";

const recorders = new WeakMap<BlockNode, WorkingSetRecorder>();

/**
 * Records, on every device over `top`, the guest reads that the top does not
 * hold (they go to the backing chain) until the returned function is called.
 */
export function attachWorkingSetRecorder(
  top: BlockNode,
  recorder: WorkingSetRecorder,
): () => void {
  recorders.set(top, recorder);
  return () => {
    if (recorders.get(top) === recorder) recorders.delete(top);
  };
}

/** The recorder attached to `top`, if any. */
export function workingSetRecorderOf(top: BlockNode): WorkingSetRecorder | undefined {
  return recorders.get(top);
}

/** Options of {@linkcode WorkingSetRecorder}. */
export interface WorkingSetRecorderOptions {
  /** Stop recording new ranges after this many (bounded memory). Default 65536. */
  maxRanges?: number;
}

/**
 * Collects the ranges read from a node.
 *
 * @example
 * ```ts
 * import { WorkingSetRecorder } from "./working_set_recorder.ts";
 * const rec = new WorkingSetRecorder();
 * rec.record(8192, 4096);
 * rec.record(12288, 4096); // continues the last range
 * rec.record(0, 16384);    // only [0, 8192) is new
 * console.log(rec.ranges); // [ { offset: 8192, length: 8192 }, { offset: 0, length: 8192 } ]
 * ```
 */
export class WorkingSetRecorder {
  readonly #maxRanges: number;
  /** Replay order. */
  #ranges: ByteRange[] = [];
  /** The same bytes, sorted and merged, to find what is new. */
  #covered = new RangeSet();
  #bytes = 0;
  #recording = true;
  #truncated = false;

  /** Makes a recorder that records at once. */
  constructor(options: WorkingSetRecorderOptions = {}) {
    this.#maxRanges = Math.max(1, options.maxRanges ?? 65536);
  }

  /** The ranges so far, in first-touch order. */
  get ranges(): readonly ByteRange[] {
    return this.#ranges;
  }

  /** Distinct bytes recorded. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether reads are still recorded. */
  get recording(): boolean {
    return this.#recording;
  }

  /** Whether ranges were dropped because of `maxRanges`. */
  get truncated(): boolean {
    return this.#truncated;
  }

  /** Stops recording (reads through a wrapped node are no longer noted). */
  stop(): void {
    this.#recording = false;
  }

  /** Notes a read of `[offset, offset + length)`: its bytes not seen before, in order. */
  record(offset: number, length: number): void {
    if (!this.#recording || length <= 0) return;
    for (const part of this.#covered.missing(offset, length)) {
      const last = this.#ranges.at(-1);
      if (last && last.offset + last.length === part.offset) last.length += part.length;
      else if (this.#ranges.length >= this.#maxRanges) {
        this.#truncated = true;
        continue;
      } else this.#ranges.push({ ...part });
      this.#covered.add(part.offset, part.length);
      this.#bytes += part.length;
    }
  }

  /** A node that forwards everything to `node` and records its reads while recording. */
  wrap(node: BlockNode): BlockNode {
    return forwardingNode(node, {
      read: (offset, buf) => {
        this.record(offset, buf.length);
        return node.read(offset, buf);
      },
      setBacking: false,
    });
  }

  /** Stops recording and returns the working set of `template` (fingerprinted now). */
  async finish(template: FingerprintSource): Promise<WorkingSet> {
    this.stop();
    return {
      templateSize: template.size,
      fingerprint: await templateFingerprint(template),
      ranges: this.#ranges.map((r) => ({ ...r })),
    };
  }
}
