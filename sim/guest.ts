/**
 * A simulated guest: boots by reading a hot set, then reads and writes like a
 * running system, timing every I/O and checking every byte it reads.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import { QedstreamError } from "../io/error.ts";
import { Random } from "./random.ts";
import type { Extent } from "./sparse_template.ts";
import { MODEL_BLOCK, WriteModel } from "./write_model.ts";

/** The disk as the guest sees it (a `BlockDevice` fits). */
export interface GuestDisk {
  /** Fills `buf` with the bytes at `offset`. */
  read(offset: number, buf: Uint8Array): Promise<void>;
  /** Writes `data` at `offset`. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes completed writes durable. */
  flush(): Promise<void>;
}

/** What the disk held before the guest wrote to it (the template): fills `buf` at `offset`. */
export type Reference = (offset: number, buf: Uint8Array) => void | Promise<void>;

/** The boot phase: a boot region read in order, then scattered files. */
export interface BootOptions {
  /** Offset of the boot region. Default 0. */
  regionOffset?: number;
  /** Length of the boot region. Default 32 MiB. */
  regionLength?: number;
  /** Size of each read of the boot region. Default 256 KiB. */
  readSize?: number;
  /** How many files are read after the boot region. Default 200. */
  files?: number;
  /** Smallest file. Default 4 KiB. */
  minFileSize?: number;
  /** Largest file. Default 256 KiB. */
  maxFileSize?: number;
  /** Reads in flight at once. Default 4. */
  queueDepth?: number;
  /** Think time between two reads of one reader, in ms. Default 0.5. */
  thinkMs?: number;
}

/** The steady phase: a mix of reads and writes with think time. */
export interface SteadyOptions {
  /** How long the phase runs, in ms. Default 20,000. */
  durationMs?: number;
  /** Stop after this many operations even if time is left. Default: no limit. */
  maxOps?: number;
  /** Share of operations that are reads (0–1). Default 0.7. */
  readFraction?: number;
  /** Smallest I/O (a multiple of 4 KiB). Default 4 KiB. */
  minIoSize?: number;
  /** Largest I/O (a multiple of 4 KiB). Default 64 KiB. */
  maxIoSize?: number;
  /** Think time before each operation, in ms. Default 5. */
  thinkMs?: number;
  /** Operations in flight at once. Default 1. */
  queueDepth?: number;
  /** Share of reads that go to the hot set and data regions rather than anywhere. Default 0.8. */
  hotFraction?: number;
  /** A flush after this many writes. Default 32. */
  flushEvery?: number;
}

/** Options of {@linkcode Guest}. */
export interface GuestOptions {
  /** The clock I/O is timed on. */
  clock: Clock;
  /** Size of the disk in bytes. */
  size: number;
  /** The disk's content before the guest wrote (the template's bytes). */
  reference: Reference;
  /** Seed of the hot set and the workload. Default 1. */
  seed?: number;
  /** Where files live (the template's data regions). Default: the whole disk. */
  dataRegions?: readonly Extent[];
  /** The boot phase. */
  boot?: BootOptions;
  /** The steady phase. */
  steady?: SteadyOptions;
  /** Stops the workload early (the run then resolves with what was done). */
  signal?: AbortSignal;
  /**
   * Attempts per I/O: a failed read or write (the disk reported an error, not
   * a wrong byte) is counted and retried after `retryDelayMs`. Default 50.
   */
  maxAttempts?: number;
  /** Wait before retrying a failed I/O, in ms. Default 100. */
  retryDelayMs?: number;
  /** Called after each I/O, for progress displays. */
  onIo?: (sample: IoSample) => void;
}

/** One timed guest I/O. */
export interface IoSample {
  /** When it was issued (clock ms). */
  at: number;
  /** How long it took, in ms. */
  latencyMs: number;
  /** What it was. */
  kind: "read" | "write" | "flush";
  /** The phase it belongs to. */
  phase: "boot" | "steady";
  /** Byte offset (0 for a flush). */
  offset: number;
  /** Byte length (0 for a flush). */
  length: number;
}

/** What a guest run did. */
export interface GuestReport {
  /** When the guest started (clock ms). */
  startedAt: number;
  /** When its first I/O completed. */
  firstIoDoneAt: number;
  /** When the boot phase completed. */
  bootDoneAt: number;
  /** When the workload ended. */
  finishedAt: number;
  /** Every I/O, in completion order. */
  samples: IoSample[];
  /** Read operations. */
  reads: number;
  /** Write operations. */
  writes: number;
  /** Flushes. */
  flushes: number;
  /** Bytes read (and verified). */
  bytesRead: number;
  /** Bytes written. */
  bytesWritten: number;
  /** I/O attempts that failed with an error and were retried. */
  ioErrors: number;
}

/** A read returned a byte the guest did not expect. */
export class GuestMismatchError extends QedstreamError {
  /** The disk offset of the first wrong byte. */
  readonly offset: number;

  /** Makes the error for the first wrong byte at `offset`. */
  constructor(offset: number, message: string) {
    super("GUEST_READ_MISMATCH", message);
    this.offset = offset;
  }
}

const KIB = 1024;
const MIB = 1024 * KIB;

interface Range {
  offset: number;
  length: number;
  write: boolean;
}

/**
 * A guest workload on the clock: {@linkcode Guest.run} boots (the boot region,
 * then the hot files), then runs the steady mix until its duration ends.
 * Every read is compared with the reference overlaid with the guest's own
 * earlier writes, and the first wrong byte fails the run with its offset.
 * Operations in flight never overlap a write in flight, so what a read must
 * return is always defined.
 *
 * @example
 * ```ts
 * import { Guest } from "./guest.ts";
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock();
 * const disk = new Uint8Array(1 << 22);
 * const guest = new Guest({
 *   clock,
 *   size: disk.length,
 *   reference: (_offset, buf) => void buf.fill(0),
 *   boot: { regionLength: 1 << 20, files: 4 },
 *   steady: { durationMs: 100 },
 * });
 * const report = await clock.run(() =>
 *   guest.run({
 *     read: async (o, b) => b.set(disk.subarray(o, o + b.length)),
 *     write: async (o, d) => disk.set(d, o),
 *     flush: async () => {},
 *   })
 * );
 * console.log(report.reads > 0); // true
 * ```
 */
export class Guest {
  /** What the guest wrote. */
  readonly model: WriteModel = new WriteModel();
  #clock: Clock;
  #size: number;
  #reference: Reference;
  #random: Random;
  #regions: readonly Extent[];
  #regionTotal: number;
  #boot: Required<BootOptions>;
  #steady: Required<SteadyOptions>;
  #signal: AbortSignal | undefined;
  #onIo: ((sample: IoSample) => void) | undefined;
  #maxAttempts: number;
  #retryDelayMs: number;
  #files: Extent[] = [];
  #inFlight: Range[] = [];
  #report: GuestReport;
  #bootDone!: () => void;
  /** Resolves when the boot phase has completed. */
  readonly booted: Promise<void> = new Promise((resolve) => this.#bootDone = resolve);

  /** Makes a guest; the hot set is chosen here, from the seed. */
  constructor(options: GuestOptions) {
    this.#clock = options.clock;
    this.#size = options.size;
    this.#reference = options.reference;
    this.#random = new Random(options.seed ?? 1).fork("guest");
    this.#regions = options.dataRegions?.length
      ? options.dataRegions
      : [{ offset: 0, length: options.size }];
    this.#regionTotal = this.#regions.reduce((s, e) => s + e.length, 0);
    const b = options.boot ?? {};
    this.#boot = {
      regionOffset: b.regionOffset ?? 0,
      regionLength: Math.min(b.regionLength ?? 32 * MIB, options.size - (b.regionOffset ?? 0)),
      readSize: b.readSize ?? 256 * KIB,
      files: b.files ?? 200,
      minFileSize: b.minFileSize ?? 4 * KIB,
      maxFileSize: b.maxFileSize ?? 256 * KIB,
      queueDepth: Math.max(1, b.queueDepth ?? 4),
      thinkMs: b.thinkMs ?? 0.5,
    };
    const s = options.steady ?? {};
    this.#steady = {
      durationMs: s.durationMs ?? 20_000,
      maxOps: s.maxOps ?? Infinity,
      readFraction: s.readFraction ?? 0.7,
      minIoSize: s.minIoSize ?? 4 * KIB,
      maxIoSize: s.maxIoSize ?? 64 * KIB,
      thinkMs: s.thinkMs ?? 5,
      queueDepth: Math.max(1, s.queueDepth ?? 1),
      hotFraction: s.hotFraction ?? 0.8,
      flushEvery: s.flushEvery ?? 32,
    };
    this.#signal = options.signal;
    this.#onIo = options.onIo;
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 50);
    this.#retryDelayMs = options.retryDelayMs ?? 100;
    const pick = this.#random.fork("hot-set");
    for (let i = 0; i < this.#boot.files; i++) {
      this.#files.push(this.#pickRange(pick, this.#boot.minFileSize, this.#boot.maxFileSize, true));
    }
    this.#report = {
      startedAt: NaN,
      firstIoDoneAt: NaN,
      bootDoneAt: NaN,
      finishedAt: NaN,
      samples: [],
      reads: 0,
      writes: 0,
      flushes: 0,
      bytesRead: 0,
      bytesWritten: 0,
      ioErrors: 0,
    };
  }

  /** The files of the hot set (read at boot). */
  get hotFiles(): readonly Extent[] {
    return this.#files;
  }

  /** What a read of `[offset, offset + buf.length)` must return now: the reference plus the guest's writes. */
  async expected(offset: number, buf: Uint8Array): Promise<void> {
    await this.#reference(offset, buf);
    this.model.overlay(offset, buf);
  }

  /** Boots and runs the workload on `disk`; resolves with the report, rejects on a wrong byte or a failed I/O. */
  async run(disk: GuestDisk): Promise<GuestReport> {
    const report = this.#report;
    report.startedAt = this.#clock.now();
    // Boot: the boot region in order, then the hot files, by a few readers.
    const boot: Extent[] = [];
    const { regionOffset, regionLength, readSize } = this.#boot;
    for (let o = 0; o < regionLength; o += readSize) {
      boot.push({ offset: regionOffset + o, length: Math.min(readSize, regionLength - o) });
    }
    boot.push(...this.#files);
    let next = 0;
    const bootReader = async () => {
      while (next < boot.length && !this.#signal?.aborted) {
        const e = boot[next++]!;
        await this.#read(disk, e.offset, e.length, "boot");
        if (this.#boot.thinkMs > 0) await this.#clock.sleep(this.#boot.thinkMs);
      }
    };
    await Promise.all(Array.from({ length: this.#boot.queueDepth }, bootReader));
    report.bootDoneAt = this.#clock.now();
    this.#bootDone();
    // Steady: think, then one operation, until the duration ends.
    const end = this.#clock.now() + this.#steady.durationMs;
    let ops = 0;
    let writesSinceFlush = 0;
    const worker = async (random: Random) => {
      while (!this.#signal?.aborted && ops < this.#steady.maxOps) {
        if (this.#steady.thinkMs > 0) await this.#clock.sleep(this.#steady.thinkMs);
        if (this.#clock.now() >= end || this.#signal?.aborted) break;
        ops++;
        const isRead = random.chance(this.#steady.readFraction);
        const range = this.#chooseFree(random, isRead);
        if (isRead) {
          await this.#read(disk, range.offset, range.length, "steady");
        } else {
          await this.#write(disk, random, range.offset, range.length);
          if (++writesSinceFlush >= this.#steady.flushEvery) {
            writesSinceFlush = 0;
            const at = this.#clock.now();
            await disk.flush();
            report.flushes++;
            this.#record({ at, kind: "flush", phase: "steady", offset: 0, length: 0 });
          }
        }
      }
    };
    await Promise.all(
      Array.from({ length: this.#steady.queueDepth }, (_, i) => worker(this.#random.fork(`w${i}`))),
    );
    report.finishedAt = this.#clock.now();
    return report;
  }

  async #read(disk: GuestDisk, offset: number, length: number, phase: IoSample["phase"]) {
    const range = this.#hold(offset, length, false);
    const buf = new Uint8Array(length);
    const at = this.#clock.now();
    try {
      await this.#attempt(() => disk.read(offset, buf));
    } finally {
      this.#free(range);
    }
    this.#record({ at, kind: "read", phase, offset, length });
    this.#report.reads++;
    this.#report.bytesRead += length;
    const want = new Uint8Array(length);
    await this.expected(offset, want);
    if (!bytesEqual(buf, want)) {
      let i = 0;
      while (buf[i] === want[i]) i++;
      throw new GuestMismatchError(
        offset + i,
        `guest read of ${length} bytes at ${offset}: byte at offset ${offset + i} is 0x${
          buf[i]!.toString(16).padStart(2, "0")
        }, expected 0x${want[i]!.toString(16).padStart(2, "0")}`,
      );
    }
  }

  async #write(disk: GuestDisk, random: Random, offset: number, length: number) {
    const range = this.#hold(offset, length, true);
    const data = new Uint8Array(length);
    const words = new Uint32Array(data.buffer);
    const base = random.uint32();
    for (let i = 0; i < words.length; i++) words[i] = (base + Math.imul(i, 0x9e3779b1)) >>> 0;
    const at = this.#clock.now();
    try {
      await this.#attempt(() => disk.write(offset, data));
      this.model.apply(offset, data);
    } finally {
      this.#free(range);
    }
    this.#record({ at, kind: "write", phase: "steady", offset, length });
    this.#report.writes++;
    this.#report.bytesWritten += length;
  }

  async #attempt(io: () => Promise<void>): Promise<void> {
    for (let i = 1;; i++) {
      try {
        return await io();
      } catch (error) {
        if (i >= this.#maxAttempts) throw error;
        this.#report.ioErrors++;
        await this.#clock.sleep(this.#retryDelayMs);
      }
    }
  }

  #record(s: Omit<IoSample, "latencyMs">): void {
    const now = this.#clock.now();
    const sample: IoSample = { ...s, latencyMs: now - s.at };
    if (Number.isNaN(this.#report.firstIoDoneAt)) this.#report.firstIoDoneAt = now;
    this.#report.samples.push(sample);
    this.#onIo?.(sample);
  }

  /** A range for the next operation that overlaps no write in flight (nor anything, if a write). */
  #chooseFree(random: Random, isRead: boolean): Range {
    for (;;) {
      const { minIoSize, maxIoSize, hotFraction } = this.#steady;
      let e: Extent;
      if (isRead && random.chance(hotFraction)) {
        e = random.chance(0.5) && this.#files.length > 0
          ? random.pick(this.#files)
          : this.#pickRange(random, minIoSize, maxIoSize, true);
      } else {
        e = this.#pickRange(random, minIoSize, maxIoSize, !isRead && random.chance(0.5));
      }
      const clash = this.#inFlight.some((r) =>
        (r.write || !isRead) && r.offset < e.offset + e.length && e.offset < r.offset + r.length
      );
      if (!clash) return { ...e, write: !isRead };
    }
  }

  #hold(offset: number, length: number, write: boolean): Range {
    const range = { offset, length, write };
    this.#inFlight.push(range);
    return range;
  }

  #free(range: Range): void {
    const i = this.#inFlight.indexOf(range);
    if (i >= 0) this.#inFlight.splice(i, 1);
  }

  /** A block-aligned range of `min`–`max` bytes, inside a data region or anywhere on the disk. */
  #pickRange(random: Random, min: number, max: number, inData: boolean): Extent {
    const blocks = random.int(Math.max(1, min / MODEL_BLOCK), Math.max(1, max / MODEL_BLOCK) + 1);
    let length = blocks * MODEL_BLOCK;
    let lo = 0;
    let hi = this.#size;
    if (inData) {
      let at = random.int(0, Math.max(1, this.#regionTotal));
      for (const r of this.#regions) {
        if (at < r.length) {
          lo = r.offset;
          hi = r.offset + r.length;
          break;
        }
        at -= r.length;
      }
    }
    lo = Math.ceil(lo / MODEL_BLOCK) * MODEL_BLOCK;
    hi = Math.floor(hi / MODEL_BLOCK) * MODEL_BLOCK;
    length = Math.max(MODEL_BLOCK, Math.min(length, hi - lo));
    const slots = Math.max(1, (hi - lo - length) / MODEL_BLOCK + 1);
    return { offset: lo + random.int(0, slots) * MODEL_BLOCK, length };
  }
}

/** Whether two byte arrays hold the same bytes (compared a word at a time where aligned). */
function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let i = 0;
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const n = a.length >>> 2;
    const wa = new Uint32Array(a.buffer, a.byteOffset, n);
    const wb = new Uint32Array(b.buffer, b.byteOffset, n);
    for (; i < n; i++) if (wa[i] !== wb[i]) return false;
    i = n * 4;
  }
  for (; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
