/**
 * The guest's sparse memory of what it wrote, to predict what it reads back.
 *
 * @module
 */

import type { Extent } from "./sparse_template.ts";

/** Bytes per block of the model; guest writes are aligned to it. */
export const MODEL_BLOCK = 4096;

/**
 * A sparse map of written blocks: every write (aligned to
 * {@linkcode MODEL_BLOCK}) is kept, so the expected content of any range is
 * the template's bytes overlaid with these.
 *
 * @example
 * ```ts
 * import { WriteModel } from "./write_model.ts";
 * const m = new WriteModel();
 * m.apply(4096, new Uint8Array(4096).fill(7));
 * const buf = new Uint8Array(8192);
 * m.overlay(0, buf);
 * console.log(buf[0], buf[4096]); // 0 7
 * ```
 */
export class WriteModel {
  #blocks = new Map<number, Uint8Array>();

  /** How many blocks were written. */
  get blockCount(): number {
    return this.#blocks.size;
  }

  /** Records a write; `offset` and `data.length` must be multiples of {@linkcode MODEL_BLOCK}. */
  apply(offset: number, data: Uint8Array): void {
    if (offset % MODEL_BLOCK !== 0 || data.length % MODEL_BLOCK !== 0) {
      throw new RangeError(
        `model writes must be ${MODEL_BLOCK}-aligned (${data.length} at ${offset})`,
      );
    }
    for (let done = 0; done < data.length; done += MODEL_BLOCK) {
      this.#blocks.set((offset + done) / MODEL_BLOCK, data.slice(done, done + MODEL_BLOCK));
    }
  }

  /** Copies every recorded byte that falls in `[offset, offset + buf.length)` into `buf`. */
  overlay(offset: number, buf: Uint8Array): void {
    if (this.#blocks.size === 0) return;
    const first = Math.floor(offset / MODEL_BLOCK);
    const last = Math.floor((offset + buf.length - 1) / MODEL_BLOCK);
    if (last - first + 1 > this.#blocks.size) {
      for (const [index, block] of this.#blocks) {
        if (index >= first && index <= last) this.#copy(index, block, offset, buf);
      }
    } else {
      for (let index = first; index <= last; index++) {
        const block = this.#blocks.get(index);
        if (block) this.#copy(index, block, offset, buf);
      }
    }
  }

  /** The written ranges, sorted and merged. */
  ranges(): Extent[] {
    const indexes = [...this.#blocks.keys()].sort((a, b) => a - b);
    const out: Extent[] = [];
    for (const index of indexes) {
      const last = out[out.length - 1];
      if (last && last.offset + last.length === index * MODEL_BLOCK) last.length += MODEL_BLOCK;
      else out.push({ offset: index * MODEL_BLOCK, length: MODEL_BLOCK });
    }
    return out;
  }

  #copy(index: number, block: Uint8Array, offset: number, buf: Uint8Array): void {
    const start = index * MODEL_BLOCK;
    const from = Math.max(start, offset);
    const to = Math.min(start + MODEL_BLOCK, offset + buf.length);
    buf.set(block.subarray(from - start, to - start), from - offset);
  }
}
