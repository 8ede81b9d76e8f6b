/**
 * Storage in memory that knows which writes were flushed, so that a test can
 * cut the power and look at what survives.
 *
 * @module
 */

import { StorageError } from "./error.ts";
import type { Storage } from "./storage.ts";

/** Bytes per page of the sparse store: pages never written take no memory. */
const PAGE_SIZE = 65536;

/** A write issued since the last flush, kept so a power cut can drop it. */
export interface PendingWrite {
  /** Byte offset of the write. */
  readonly offset: number;
  /** The bytes written (a private copy). */
  readonly data: Uint8Array;
}

/** How a simulated power cut treats the writes that were not yet flushed. */
export interface PowerCutOptions {
  /**
   * Decides the fate of each unflushed write, in issue order: `true` keeps it
   * whole, `false` drops it, a number keeps only that many leading bytes (a
   * torn write). By default every unflushed write is dropped.
   */
  keep?: (write: PendingWrite, index: number) => boolean | number;
}

/** Sparse pages plus a length: the contents of one version of the store. */
class Pages {
  map = new Map<number, Uint8Array>();
  length = 0;

  clone(): Pages {
    const copy = new Pages();
    for (const [k, v] of this.map) copy.map.set(k, v.slice());
    copy.length = this.length;
    return copy;
  }

  read(offset: number, buf: Uint8Array): number {
    const n = Math.max(0, Math.min(buf.length, this.length - offset));
    let done = 0;
    while (done < n) {
      const pos = offset + done;
      const index = Math.floor(pos / PAGE_SIZE);
      const within = pos - index * PAGE_SIZE;
      const take = Math.min(PAGE_SIZE - within, n - done);
      const page = this.map.get(index);
      if (page) buf.set(page.subarray(within, within + take), done);
      else buf.fill(0, done, done + take);
      done += take;
    }
    return n;
  }

  write(offset: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const index = Math.floor(pos / PAGE_SIZE);
      const within = pos - index * PAGE_SIZE;
      const take = Math.min(PAGE_SIZE - within, data.length - done);
      let page = this.map.get(index);
      if (!page) {
        page = new Uint8Array(PAGE_SIZE);
        this.map.set(index, page);
      }
      page.set(data.subarray(done, done + take), within);
      done += take;
    }
    this.length = Math.max(this.length, offset + data.length);
  }

  truncate(length: number): void {
    if (length < this.length) {
      const lastPage = Math.floor(length / PAGE_SIZE);
      for (const index of [...this.map.keys()]) {
        if (index > lastPage) this.map.delete(index);
      }
      this.map.get(lastPage)?.fill(0, length - lastPage * PAGE_SIZE);
    }
    this.length = length;
  }
}

/** One entry of the unflushed log: a write or a truncate. */
type LogEntry =
  | { kind: "write"; offset: number; data: Uint8Array }
  | { kind: "truncate"; length: number };

/**
 * A sparse in-memory {@linkcode Storage} with a flush model.
 *
 * The current contents answer reads; a second copy holds only what was
 * flushed, and a log holds what was written since. {@linkcode powerCut}
 * returns a new store with the flushed contents and a chosen subset of the
 * log applied, as a disk would after losing power.
 *
 * @example Lose an unflushed write
 * ```ts
 * import { MemoryStorage } from "./memory_storage.ts";
 * const disk = new MemoryStorage();
 * await disk.write(0, new Uint8Array([1]));
 * await disk.flush();
 * await disk.write(0, new Uint8Array([2]));
 * const after = disk.powerCut();
 * const b = new Uint8Array(1);
 * await after.read(0, b);
 * console.log(b[0]); // 1
 * ```
 */
export class MemoryStorage implements Storage {
  #current = new Pages();
  #durable = new Pages();
  #log: LogEntry[] = [];
  #closed = false;
  /** Counts of requests, for tests and the simulator. */
  readonly stats = { reads: 0, writes: 0, flushes: 0, bytesRead: 0, bytesWritten: 0 };

  /** Makes a store holding `initial` (flushed), or an empty one. */
  constructor(initial?: Uint8Array) {
    if (initial) {
      this.#current.write(0, initial);
      this.#durable.write(0, initial);
    }
  }

  #check(): void {
    if (this.#closed) throw new StorageError("STORAGE_CLOSED", "Memory storage is closed");
  }

  read(offset: number, buf: Uint8Array): Promise<number> {
    this.#check();
    this.stats.reads++;
    const n = this.#current.read(offset, buf);
    this.stats.bytesRead += n;
    return Promise.resolve(n);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    this.#check();
    this.stats.writes++;
    this.stats.bytesWritten += data.length;
    this.#current.write(offset, data);
    this.#log.push({ kind: "write", offset, data: data.slice() });
    return Promise.resolve();
  }

  flush(): Promise<void> {
    this.#check();
    this.stats.flushes++;
    for (const entry of this.#log) this.#apply(this.#durable, entry);
    this.#log = [];
    return Promise.resolve();
  }

  size(): Promise<number> {
    this.#check();
    return Promise.resolve(this.#current.length);
  }

  truncate(length: number): Promise<void> {
    this.#check();
    this.#current.truncate(length);
    this.#log.push({ kind: "truncate", length });
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  /** The writes issued since the last flush, oldest first. */
  get pendingWrites(): PendingWrite[] {
    return this.#log.flatMap((e) => e.kind === "write" ? [{ offset: e.offset, data: e.data }] : []);
  }

  /** A copy of the current contents (flushed or not). */
  snapshot(): Uint8Array {
    const out = new Uint8Array(this.#current.length);
    this.#current.read(0, out);
    return out;
  }

  /** A new, independent store with the same current contents, all flushed. */
  clone(): MemoryStorage {
    const copy = new MemoryStorage();
    copy.#current = this.#current.clone();
    copy.#durable = this.#current.clone();
    return copy;
  }

  /**
   * The store as a disk would hold it after losing power now: everything
   * flushed, plus the unflushed writes that `options.keep` keeps (whole or
   * torn). This store is left unchanged.
   */
  powerCut(options: PowerCutOptions = {}): MemoryStorage {
    const survivor = this.#durable.clone();
    let index = 0;
    for (const entry of this.#log) {
      if (entry.kind === "truncate") {
        this.#apply(survivor, entry);
        continue;
      }
      const verdict = options.keep?.({ offset: entry.offset, data: entry.data }, index++) ?? false;
      if (verdict === true) survivor.write(entry.offset, entry.data);
      else if (typeof verdict === "number" && verdict > 0) {
        survivor.write(entry.offset, entry.data.subarray(0, Math.min(verdict, entry.data.length)));
      }
    }
    const copy = new MemoryStorage();
    copy.#current = survivor;
    copy.#durable = survivor.clone();
    return copy;
  }

  #apply(pages: Pages, entry: LogEntry): void {
    if (entry.kind === "write") pages.write(entry.offset, entry.data);
    else pages.truncate(entry.length);
  }
}
