/**
 * A set of bytes as sorted, merged, non-touching ranges: what the working-set
 * recorder has seen and what a stream's first pass has accounted.
 *
 * @module
 */

import type { ByteRange } from "./working_set.ts";

/** Sorted, merged byte ranges with overlap queries (binary search; insertion is linear). */
export class RangeSet {
  #ranges: ByteRange[] = [];

  /** How many merged ranges the set holds. */
  get count(): number {
    return this.#ranges.length;
  }

  /** Adds `[offset, offset + length)`. */
  add(offset: number, length: number): void {
    if (length <= 0) return;
    const r = this.#ranges;
    let start = offset;
    let end = offset + length;
    const i = this.#firstEndingAtOrAfter(start);
    let j = i;
    while (j < r.length && r[j]!.offset <= end) {
      start = Math.min(start, r[j]!.offset);
      end = Math.max(end, r[j]!.offset + r[j]!.length);
      j++;
    }
    r.splice(i, j - i, { offset: start, length: end - start });
  }

  /** Bytes of `[offset, offset + length)` in the set. */
  overlap(offset: number, length: number): number {
    const end = offset + length;
    let n = 0;
    for (let i = this.#firstEndingAtOrAfter(offset + 1); i < this.#ranges.length; i++) {
      const r = this.#ranges[i]!;
      if (r.offset >= end) break;
      n += Math.min(end, r.offset + r.length) - Math.max(offset, r.offset);
    }
    return n;
  }

  /** The parts of `[offset, offset + length)` not in the set, in order. */
  missing(offset: number, length: number): ByteRange[] {
    const out: ByteRange[] = [];
    const end = offset + length;
    let pos = offset;
    for (
      let i = this.#firstEndingAtOrAfter(offset + 1);
      i < this.#ranges.length && pos < end;
      i++
    ) {
      const r = this.#ranges[i]!;
      if (r.offset >= end) break;
      if (r.offset > pos) out.push({ offset: pos, length: r.offset - pos });
      pos = Math.max(pos, r.offset + r.length);
    }
    if (pos < end) out.push({ offset: pos, length: end - pos });
    return out;
  }

  /** Index of the first range whose end is at or after `at`. */
  #firstEndingAtOrAfter(at: number): number {
    let lo = 0;
    let hi = this.#ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const r = this.#ranges[mid]!;
      if (r.offset + r.length < at) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
