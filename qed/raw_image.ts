/**
 * A raw image: guest offset = file offset. Used as a backing file and as a
 * stream source.
 *
 * @module
 */

import { readFull, type Storage } from "../io/storage.ts";
import type { BackingImage } from "./backing_image.ts";
import { QedIoError } from "./error.ts";
import type { QedExtent } from "./image.ts";

const ZERO_CHUNK = 1 << 20;

/** Options of {@linkcode RawImage.open}. */
export interface RawOpenOptions {
  /** Refuse writes. Default `false`. */
  readOnly?: boolean;
}

/**
 * A raw image over a {@linkcode Storage}; its size is the file length at open.
 *
 * @example
 * ```ts
 * import { MemoryStorage } from "../io/memory_storage.ts";
 * import { RawImage } from "./raw_image.ts";
 * const disk = new MemoryStorage();
 * await RawImage.create(disk, 8192);
 * const raw = await RawImage.open(disk);
 * await raw.write(100, new Uint8Array([9]));
 * const b = new Uint8Array(1);
 * await raw.read(100, b);
 * console.log(raw.size, b[0]); // 8192 9
 * ```
 */
export class RawImage implements BackingImage {
  /** The storage holding the image. */
  readonly storage: Storage;
  /** Whether writes are refused. */
  readonly readOnly: boolean;
  #size: number;
  #closed = false;

  private constructor(storage: Storage, size: number, readOnly: boolean) {
    this.storage = storage;
    this.#size = size;
    this.readOnly = readOnly;
  }

  /** Makes `storage` an all-zero raw image of `size` bytes. */
  static async create(storage: Storage, size: number): Promise<void> {
    await storage.truncate(0);
    await storage.truncate(size);
    await storage.flush();
  }

  /** Opens `storage` as a raw image. */
  static async open(storage: Storage, options: RawOpenOptions = {}): Promise<RawImage> {
    return new RawImage(storage, await storage.size(), options.readOnly ?? false);
  }

  /** Guest-visible size in bytes. */
  get size(): number {
    return this.#size;
  }

  #check(offset: number, length: number, write: boolean): void {
    if (this.#closed) throw new QedIoError("QED_CLOSED", "The image is closed");
    if (write && this.readOnly) {
      throw new QedIoError("QED_READ_ONLY", "The image is opened read-only");
    }
    if (
      !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 ||
      length < 0 || offset + length > this.#size
    ) {
      throw new QedIoError(
        "QED_OUT_OF_RANGE",
        `Request [${offset}, +${length}) is outside the image (size ${this.#size})`,
      );
    }
  }

  /** Reads `buf.length` bytes at `offset` (zeros where the file is shorter). */
  async read(offset: number, buf: Uint8Array): Promise<void> {
    this.#check(offset, buf.length, false);
    await readFull(this.storage, offset, buf);
  }

  /** Writes `data` at `offset`. */
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#check(offset, data.length, true);
    await this.storage.write(offset, data);
  }

  /** Writes `length` explicit zero bytes at `offset`. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#check(offset, length, true);
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK, length));
    for (let done = 0; done < length; done += zeros.length) {
      await this.storage.write(
        offset + done,
        zeros.subarray(0, Math.min(zeros.length, length - done)),
      );
    }
  }

  /** Always one data run: `[offset, offset + length)` clipped to the image. */
  blockStatus(offset: number, length: number): Promise<QedExtent> {
    this.#check(offset, 0, false);
    const len = Math.max(0, Math.min(length, this.#size - offset));
    return Promise.resolve({ kind: "data", offset, length: len, hostOffset: offset });
  }

  /** One data run over the range (default: the whole image). */
  map(offset = 0, length: number = this.#size - offset): Promise<QedExtent[]> {
    this.#check(offset, length, false);
    return Promise.resolve(
      length === 0 ? [] : [{ kind: "data", offset, length, hostOffset: offset }],
    );
  }

  /** Makes completed writes durable. */
  async flush(): Promise<void> {
    if (this.#closed) throw new QedIoError("QED_CLOSED", "The image is closed");
    if (!this.readOnly) await this.storage.flush();
  }

  /** Flushes and closes the storage. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      if (!this.readOnly) await this.storage.flush();
    } finally {
      this.#closed = true;
      await this.storage.close();
    }
  }
}
