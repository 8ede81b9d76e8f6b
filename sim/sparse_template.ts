/**
 * A generated template disk of any virtual size: data in some regions, holes
 * elsewhere, bytes computed from the offset on demand, never stored.
 *
 * @module
 */

import { mix32, Random } from "./random.ts";

/** A run of bytes `[offset, offset + length)`. */
export interface Extent {
  /** Byte offset of the run. */
  offset: number;
  /** Length of the run in bytes. */
  length: number;
}

/** What a template answers about allocation: data, or a hole that reads as zeros. */
export interface TemplateStatus {
  /** `"data"` inside a data region, `"unallocated"` in a hole. */
  kind: "data" | "unallocated";
  /** Length of the run with that status starting at the asked offset (never beyond the asked length). */
  length: number;
}

/** Options of {@linkcode SparseTemplate}. */
export interface SparseTemplateOptions {
  /** Virtual size in bytes. Default 4 GiB. */
  size?: number;
  /** Seed of the layout and of the bytes. Default 1. */
  seed?: number;
  /** Share of the disk, after the boot region, that holds data (0–1). Default 0.05. */
  dataFraction?: number;
  /** Length of the all-data region at offset 0 (boot loader, kernel, system files). Default 64 MiB. */
  bootRegionLength?: number;
  /** Mean length of a scattered data region. Default 2 MiB. */
  meanRegionLength?: number;
  /** Alignment of every region (the image cluster size is a good choice). Default 64 KiB. */
  granularity?: number;
}

const MIB = 1024 * 1024;

/**
 * A deterministic sparse template: the layout and every byte follow from the
 * seed, so any number of readers (the remote, the guest's oracle, the final
 * verification) agree without a copy in memory.
 *
 * Data bytes are 32-bit words hashed from their offset and the seed, written
 * in the platform's byte order.
 *
 * @example
 * ```ts
 * import { SparseTemplate } from "./sparse_template.ts";
 * const t = new SparseTemplate({ size: 64 * 1024 * 1024, bootRegionLength: 1024 * 1024 });
 * const buf = new Uint8Array(16);
 * t.readSync(0, buf);
 * console.log(t.dataBytes > 0, buf.some((b) => b !== 0)); // true true
 * ```
 */
export class SparseTemplate {
  /** Virtual size in bytes. */
  readonly size: number;
  /** The data regions, sorted, not touching each other. */
  readonly extents: readonly Extent[];
  /** Total bytes in data regions. */
  readonly dataBytes: number;
  #key: number;
  #scratch = new Uint32Array(16384);

  /** Lays out a template from its options. */
  constructor(options: SparseTemplateOptions = {}) {
    const size = options.size ?? 4 * 1024 * MIB;
    const granularity = options.granularity ?? 65536;
    const fraction = Math.min(1, Math.max(0, options.dataFraction ?? 0.05));
    const bootLength = Math.min(size, options.bootRegionLength ?? 64 * MIB);
    const meanRegion = Math.max(granularity, options.meanRegionLength ?? 2 * MIB);
    const seed = options.seed ?? 1;
    if (!Number.isSafeInteger(size) || size <= 0 || size % granularity !== 0) {
      throw new RangeError(`template size ${size} must be a positive multiple of ${granularity}`);
    }
    this.size = size;
    this.#key = mix32(seed ^ 0x5eed5eed);
    const random = new Random(seed).fork("template-layout");
    const extents: Extent[] = [];
    if (bootLength > 0) extents.push({ offset: 0, length: align(bootLength, granularity) });
    let pos = extents[0]?.length ?? 0;
    if (fraction >= 1) {
      if (pos < size) extents.push({ offset: pos, length: size - pos });
    } else if (fraction > 0) {
      const meanHole = (meanRegion * (1 - fraction)) / fraction;
      while (pos < size) {
        pos += align(random.next() * 2 * meanHole, granularity);
        if (pos >= size) break;
        const length = Math.min(
          size - pos,
          Math.max(granularity, align(random.next() * 2 * meanRegion, granularity)),
        );
        const last = extents[extents.length - 1];
        if (last && last.offset + last.length === pos) last.length += length;
        else extents.push({ offset: pos, length });
        pos += length;
      }
    }
    this.extents = extents;
    this.dataBytes = extents.reduce((sum, e) => sum + e.length, 0);
  }

  /** Reads `buf.length` bytes at `offset` (zeros in holes), at once. */
  readSync(offset: number, buf: Uint8Array): void {
    buf.fill(0);
    const end = offset + buf.length;
    for (let i = this.#firstExtentEndingAfter(offset); i < this.extents.length; i++) {
      const e = this.extents[i]!;
      if (e.offset >= end) break;
      const from = Math.max(offset, e.offset);
      const to = Math.min(end, e.offset + e.length);
      this.#fillData(from, buf.subarray(from - offset, to - offset));
    }
  }

  /** Reads `buf.length` bytes at `offset`, as a {@linkcode TemplateSource} would. */
  read(offset: number, buf: Uint8Array): Promise<void> {
    if (offset < 0 || offset + buf.length > this.size) {
      return Promise.reject(
        new RangeError(`read of ${buf.length} bytes at ${offset} is outside the template`),
      );
    }
    this.readSync(offset, buf);
    return Promise.resolve();
  }

  /** The status of the run starting at `offset`, at most `length` bytes long. */
  blockStatus(offset: number, length: number): Promise<TemplateStatus> {
    return Promise.resolve(this.statusSync(offset, length));
  }

  /** {@linkcode SparseTemplate.blockStatus}, at once. */
  statusSync(offset: number, length: number): TemplateStatus {
    const end = Math.min(this.size, offset + length);
    const i = this.#firstExtentEndingAfter(offset);
    const e = this.extents[i];
    if (e && e.offset <= offset) {
      return { kind: "data", length: Math.min(end, e.offset + e.length) - offset };
    }
    return { kind: "unallocated", length: Math.min(end, e ? e.offset : end) - offset };
  }

  /** The data regions that overlap `[offset, offset + length)`, clipped to it. */
  dataIn(offset: number, length: number): Extent[] {
    const out: Extent[] = [];
    const end = offset + length;
    for (let i = this.#firstExtentEndingAfter(offset); i < this.extents.length; i++) {
      const e = this.extents[i]!;
      if (e.offset >= end) break;
      const from = Math.max(offset, e.offset);
      out.push({ offset: from, length: Math.min(end, e.offset + e.length) - from });
    }
    return out;
  }

  #firstExtentEndingAfter(offset: number): number {
    let lo = 0;
    let hi = this.extents.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const e = this.extents[mid]!;
      if (e.offset + e.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #fillData(offset: number, out: Uint8Array): void {
    // Generate whole words covering the range, a scratch buffer at a time.
    let done = 0;
    while (done < out.length) {
      const pos = offset + done;
      const firstWord = Math.floor(pos / 4);
      const skip = pos - firstWord * 4;
      const lo0 = firstWord >>> 0;
      // Never cross a 2^32-word boundary in one batch: the key changes there.
      const words = Math.min(
        this.#scratch.length,
        Math.ceil((out.length - done + skip) / 4),
        4294967296 - lo0,
      );
      const scratch = this.#scratch;
      const key = mix32(this.#key ^ Math.floor(firstWord / 4294967296));
      for (let w = 0; w < words; w++) scratch[w] = mix32(((lo0 + w) >>> 0) ^ key);
      const bytes = new Uint8Array(
        scratch.buffer,
        skip,
        Math.min(words * 4 - skip, out.length - done),
      );
      out.set(bytes, done);
      done += bytes.length;
    }
  }
}

function align(n: number, granularity: number): number {
  return Math.round(n / granularity) * granularity;
}
