/**
 * A machine's local disk for the simulator: sparse memory with the latency
 * and throughput of a fast local SSD, taken on the injected clock.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import { StorageError } from "../io/error.ts";
import type { Storage } from "../io/storage.ts";

/** Bytes per page: pages never written take no memory. */
const PAGE = 65536;

/** Options of {@linkcode LocalDisk}. */
export interface LocalDiskOptions {
  /** The clock requests take time on. */
  clock: Clock;
  /** Time per request in ms. Default 0.05 (a local NVMe SSD). */
  latencyMs?: number;
  /** Bytes per second of each request's transfer. Default 2,000,000,000. */
  bandwidth?: number;
}

/**
 * Sparse in-memory {@linkcode Storage} with a per-request cost of
 * `latencyMs + bytes / bandwidth` on the clock. Unlike `MemoryStorage` it
 * keeps a single copy of the data (no power-cut model), so simulating
 * several machines with hundreds of MiB each stays affordable.
 *
 * @example
 * ```ts
 * import { LocalDisk } from "./local_disk.ts";
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock();
 * const disk = new LocalDisk({ clock, latencyMs: 0.1 });
 * await clock.run(() => disk.write(0, new Uint8Array(4096)));
 * console.log(await disk.size(), clock.now() > 0.1); // 4096 true
 * ```
 */
export class LocalDisk implements Storage {
  #clock: Clock;
  #latency: number;
  #bandwidth: number;
  #pages = new Map<number, Uint8Array>();
  #length = 0;
  #closed = false;

  /** Makes an empty disk. */
  constructor(options: LocalDiskOptions) {
    this.#clock = options.clock;
    this.#latency = options.latencyMs ?? 0.05;
    this.#bandwidth = options.bandwidth ?? 2_000_000_000;
  }

  /** Bytes held in memory (written pages). */
  get residentBytes(): number {
    return this.#pages.size * PAGE;
  }

  async read(offset: number, buf: Uint8Array): Promise<number> {
    this.#check();
    await this.#cost(buf.length);
    const n = Math.max(0, Math.min(buf.length, this.#length - offset));
    for (let done = 0; done < n;) {
      const pos = offset + done;
      const index = Math.floor(pos / PAGE);
      const within = pos - index * PAGE;
      const take = Math.min(PAGE - within, n - done);
      const page = this.#pages.get(index);
      if (page) buf.set(page.subarray(within, within + take), done);
      else buf.fill(0, done, done + take);
      done += take;
    }
    return n;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#check();
    await this.#cost(data.length);
    for (let done = 0; done < data.length;) {
      const pos = offset + done;
      const index = Math.floor(pos / PAGE);
      const within = pos - index * PAGE;
      const take = Math.min(PAGE - within, data.length - done);
      let page = this.#pages.get(index);
      if (!page) {
        page = new Uint8Array(PAGE);
        this.#pages.set(index, page);
      }
      page.set(data.subarray(done, done + take), within);
      done += take;
    }
    this.#length = Math.max(this.#length, offset + data.length);
  }

  async flush(): Promise<void> {
    this.#check();
    await this.#cost(0);
  }

  size(): Promise<number> {
    this.#check();
    return Promise.resolve(this.#length);
  }

  truncate(length: number): Promise<void> {
    this.#check();
    if (length < this.#length) {
      const last = Math.floor(length / PAGE);
      for (const index of [...this.#pages.keys()]) {
        if (index > last) this.#pages.delete(index);
      }
      const page = this.#pages.get(last);
      if (page) page.fill(0, length - last * PAGE);
    }
    this.#length = length;
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#pages.clear();
    return Promise.resolve();
  }

  #cost(bytes: number): Promise<void> {
    const ms = this.#latency + (bytes / this.#bandwidth) * 1000;
    return ms > 0 ? this.#clock.sleep(ms) : Promise.resolve();
  }

  #check(): void {
    if (this.#closed) throw new StorageError("STORAGE_CLOSED", "local disk is closed");
  }
}
