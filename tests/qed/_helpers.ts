/**
 * Shared helpers of the QED tests: a storage wrapper that records requests,
 * and small image builders.
 *
 * @module
 */

import { MemoryStorage, type Storage } from "../../io/mod.ts";
import { type QedCreateOptions, QedImage, type QedOpenOptions } from "../../qed/mod.ts";

/**
 * A {@linkcode Storage} wrapper that records every request as a line such as
 * `"write 4096 @0x50000"`, `"read 512 @0x0"` or `"flush"` (prefixed with
 * `name` when given; several wrappers may share one log), and can forbid
 * writes.
 */
export class RecordingStorage implements Storage {
  readonly inner: MemoryStorage;
  readonly log: string[];
  readonly #prefix: string;
  /** When set, a write throws instead of reaching the store. */
  forbidWrites = false;

  constructor(inner: MemoryStorage = new MemoryStorage(), log: string[] = [], name = "") {
    this.inner = inner;
    this.log = log;
    this.#prefix = name ? `${name} ` : "";
  }

  #record(line: string): void {
    this.log.push(this.#prefix + line);
  }

  read(offset: number, buf: Uint8Array): Promise<number> {
    this.#record(`read ${buf.length} @0x${offset.toString(16)}`);
    return this.inner.read(offset, buf);
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.forbidWrites) throw new Error(`unexpected write of ${data.length} at ${offset}`);
    this.#record(`write ${data.length} @0x${offset.toString(16)}`);
    return this.inner.write(offset, data);
  }
  flush(): Promise<void> {
    this.#record("flush");
    return this.inner.flush();
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  truncate(length: number): Promise<void> {
    if (this.forbidWrites) throw new Error(`unexpected truncate to ${length}`);
    this.#record(`truncate ${length}`);
    return this.inner.truncate(length);
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /** Empties the log. */
  clear(): void {
    this.log.length = 0;
  }
}

/** Creates an image in a fresh memory store and opens it. */
export async function newImage(
  create: QedCreateOptions,
  open: QedOpenOptions = {},
): Promise<{ disk: MemoryStorage; image: QedImage }> {
  const disk = new MemoryStorage();
  await QedImage.create(disk, create);
  return { disk, image: await QedImage.open(disk, open) };
}

/** `n` bytes of a recognisable pattern starting at `seed`. */
export function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (seed + i * 31 + (i >> 8)) & 0xff;
  return out;
}

/** Little-endian u64 at `offset` of a store. */
export async function u64At(disk: Storage, offset: number): Promise<number> {
  const b = new Uint8Array(8);
  await disk.read(offset, b);
  const v = new DataView(b.buffer);
  return v.getUint32(0, true) + v.getUint32(4, true) * 2 ** 32;
}

/** Writes a little-endian u64 at `offset` of a store. */
export async function setU64(disk: Storage, offset: number, value: number): Promise<void> {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(value), true);
  await disk.write(offset, b);
}

/**
 * A store that delays every request by a pseudo-random number of event-loop
 * turns (seeded), so concurrent requests complete in shuffled order.
 */
export class JitterStorage implements Storage {
  readonly inner: MemoryStorage;
  #state: number;

  constructor(inner: MemoryStorage, seed: number) {
    this.inner = inner;
    this.#state = seed >>> 0 || 1;
  }

  async #delay(): Promise<void> {
    // xorshift32
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    const turns = this.#state % 6;
    for (let i = 0; i < turns; i++) await Promise.resolve();
    if ((this.#state >>> 8) % 16 === 0) await new Promise((r) => setTimeout(r, 0));
  }

  async read(offset: number, buf: Uint8Array): Promise<number> {
    await this.#delay();
    return await this.inner.read(offset, buf);
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.#delay();
    await this.inner.write(offset, data);
  }
  async flush(): Promise<void> {
    await this.#delay();
    await this.inner.flush();
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  truncate(length: number): Promise<void> {
    return this.inner.truncate(length);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Asserts two byte arrays are equal, reporting the first difference (no huge diffs). */
export function assertBytes(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length} != ${expected.length}`);
  }
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) {
      throw new Error(`${what}: first difference at ${i}: ${actual[i]} != ${expected[i]}`);
    }
  }
}
