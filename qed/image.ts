/**
 * The QED image driver: create, open, read, write, write zeroes, block
 * status, change the backing file, check and repair, close.
 *
 * ```
 *  file:  ┌────────┬──────────┬──────────────────────────────────────────┐
 *         │ header │ L1 table │ data clusters and L2 tables, appended in │
 *         │ area   │          │ allocation order                         │
 *         └────────┴──────────┴──────────────────────────────────────────┘
 *  guest pos ──L1[pos >> l1_shift]──▶ L2 table ──L2[(pos >> l2_shift) & l2_mask]──▶
 *            0: unallocated (backing or zeros) · 1: zero cluster · else data offset
 * ```
 *
 * Ordering rules (qemu 7.2's, §8 of the reference):
 * - Reads and in-place writes to data clusters run concurrently; allocating
 *   writes and metadata updates hold a FIFO lock, one at a time, and redo
 *   their lookup once they hold it.
 * - An allocating write appends its clusters at the in-memory file size and
 *   writes, in this order: copy-on-write prefill and postfill (from the
 *   backing image, or zeros), the data, a flush when the image has a backing
 *   file (so no L2 entry can point at copied data that a power cut lost),
 *   then the metadata: a new L2 table written whole and flushed before the
 *   512-byte L1 sector that points at it, or the 512-byte sector of an
 *   existing L2 table.
 * - Without a backing file nothing is flushed before the metadata; instead
 *   the need-check bit is set (512-byte header read-modify-write) before the
 *   first allocation, and cleared by {@linkcode QedImage.flush} and
 *   {@linkcode QedImage.close} once everything is on disk.
 * - Updates of an existing L2 table are deferred (kept in the pinned cached
 *   table) and written per table, coalesced, after a flush, at the next
 *   flush, close, check, backing change or need-check clear, or when more
 *   than 8 tables are pending (see `#allocateData` for why this is
 *   crash-safe); past `maxPendingL2Bytes` (64 MiB) of new clusters they are
 *   written in the background, a flush and then a copy of their sectors as
 *   they were, while writes go on. A backing change flushes them before its
 *   header write, so no entry is lost after the header stops naming the
 *   file it relied on.
 * - In-memory tables change only after the data they point at is written, so
 *   a concurrent read never sees a mapping to unwritten data.
 *
 * Deliberate differences from qemu 7.2 (see §14 of the reference):
 * - A partial write into a zero cluster fills the rest of the new cluster
 *   with zeros, as the specification says; qemu copies backing data (§14.2).
 * - Cluster counts are computed correctly: no extra cluster is allocated for
 *   huge requests and `check()` reports no spurious leaks (§14.3).
 * - Every entry of a contiguous run is validated, not only the first (§6.4).
 * - table_size 1 images open (qemu refuses them) but are never created (§14.1).
 * - Existing-table L2 sectors are written at the next flush (after a flush
 *   of the data) rather than after each write (and, with a backing file,
 *   its flush); the file's bytes after a flush are qemu's, only the syscall
 *   order and the number of flushes differ.
 * - `changeBackingFile()` flushes before its header write (qemu does not),
 *   so a power cut cannot leave the header without the backing file while
 *   the last L2 entries that needed it are lost.
 * - Need-check is cleared by `flush()` (qemu: by drain or its 5-second timer,
 *   which runs here only when a clock is given) and by `close()` only while
 *   no corruption is known to remain; qemu's close clears it always (§14.5).
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import { readFull, type Storage } from "../io/storage.ts";
import type { BackingImage } from "./backing_image.ts";
import { checkTables, type QedCheckOptions, type QedCheckResult } from "./_check.ts";
import { QedFormatError, QedIoError, QedOptionError } from "./error.ts";
import { FifoLock } from "./_fifo_lock.ts";
import {
  decodeHeader,
  encodeHeader,
  isPowerOfTwo,
  QED_AUTOCLEAR_FEATURE_MASK,
  QED_COMPAT_FEATURE_MASK,
  QED_DEFAULT_CLUSTER_SIZE,
  QED_DEFAULT_TABLE_SIZE,
  QED_F_BACKING_FILE,
  QED_F_BACKING_FORMAT_NO_PROBE,
  QED_F_NEED_CHECK,
  QED_HEADER_BYTES,
  QED_MAGIC,
  QED_MAX_BACKING_NAME,
  QED_MAX_CLUSTER_SIZE,
  QED_MAX_TABLE_SIZE,
  QED_MIN_CLUSTER_SIZE,
  QED_MIN_TABLE_SIZE,
  type QedGeometry,
  type QedHeader,
  qedMaxImageSize,
  validateHeader,
} from "./header.ts";
import { L2Cache, QED_DEFAULT_L2_CACHE_SIZE } from "./l2_cache.ts";
import {
  isValidClusterOffset,
  isValidTableOffset,
  QED_SECTOR_BYTES,
  QED_UNALLOCATED,
  QED_ZERO_CLUSTER,
  QedTable,
} from "./table.ts";

/** Options of {@linkcode QedImage.create}, with `qemu-img create`'s defaults. */
export interface QedCreateOptions {
  /** Guest size in bytes; rounded up to a multiple of 512. */
  size: number;
  /** Cluster size in bytes: a power of two in [4096, 64 MiB]. Default 65536. */
  clusterSize?: number;
  /** Table size in clusters: a power of two in [2, 16] (1 is refused, see §14.1). Default 4. */
  tableSize?: number;
  /** Backing file name, stored verbatim. Default none. */
  backingFile?: string;
  /** Backing format; exactly `"raw"` sets `QED_F_BACKING_FORMAT_NO_PROBE`. */
  backingFormat?: string;
}

/** Options of {@linkcode QedImage.open}. */
export interface QedOpenOptions {
  /** Open for reading only: no header updates, no repair. Default `false`. */
  readOnly?: boolean;
  /** The backing image to read unallocated ranges from. Default `null` (zeros). */
  backing?: BackingImage | null;
  /** Run the repairing check on a read-write open when need-check is set. Default `true`. */
  repairOnOpen?: boolean;
  /** Number of L2 tables cached. Default 50. */
  l2CacheSize?: number;
  /**
   * Clock of the need-check timer: when given, need-check is cleared
   * {@linkcode QED_NEED_CHECK_TIMEOUT_MS} after the last allocating write, as
   * qemu does on its virtual clock. Default none: cleared by `flush()` and
   * `close()` only.
   */
  clock?: Clock;
  /**
   * How many bytes of newly allocated clusters may wait for their deferred
   * L2 entries. Past it the entries waiting are written in the background
   * (a flush, then the entries as they are at that moment) while writes go
   * on. It bounds what a crash or a killed process costs: clusters written
   * but not yet mapped are lost work, so a stream rerun after `kill -9`
   * copies at most about this much again. Default
   * {@linkcode QED_MAX_PENDING_L2_BYTES}.
   */
  maxPendingL2Bytes?: number;
}

export type { QedCheckOptions, QedCheckResult } from "./_check.ts";

/** Delay after the last allocating write before need-check is cleared (qemu: 5 s). */
export const QED_NEED_CHECK_TIMEOUT_MS = 5000;

/** The allocation state of a range. */
export type ExtentKind = "data" | "zero" | "unallocated";

/** A run of guest bytes in one allocation state. */
export interface QedExtent {
  /** Allocation state. */
  kind: ExtentKind;
  /** Guest offset of the run. */
  offset: number;
  /** Length of the run in bytes. */
  length: number;
  /** For data runs: the file offset holding the byte at `offset`. */
  hostOffset?: number;
}

/** One lookup result: a run of clusters in the same state, inside one L2 table. */
interface Run {
  kind: ExtentKind;
  /** Guest bytes covered, starting at the looked-up position. */
  length: number;
  /** For data runs: the file offset of the looked-up position. */
  host: number;
}

const ZERO_CHUNK = 1 << 20;
/**
 * Most L2 tables with deferred entries at once (each stays pinned in the
 * cache, so this bounds the memory they hold); never more than the cache
 * capacity, so a pending table is written before the cache would have to
 * evict it.
 */
const QED_MAX_PENDING_L2_TABLES = 8;

/**
 * Default of {@linkcode QedOpenOptions.maxPendingL2Bytes}: 64 MiB of newly
 * allocated clusters may wait for their L2 entries.
 */
export const QED_MAX_PENDING_L2_BYTES = 64 * 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function optionError(code: string, message: string): never {
  throw new QedOptionError(code, message);
}

/**
 * A QED image over a {@linkcode Storage}.
 *
 * @example Create, write, read back
 * ```ts
 * import { MemoryStorage } from "../io/memory_storage.ts";
 * import { QedImage } from "./image.ts";
 * const disk = new MemoryStorage();
 * await QedImage.create(disk, { size: 1 << 20 });
 * const image = await QedImage.open(disk);
 * await image.write(4096, new Uint8Array(512).fill(7));
 * const buf = new Uint8Array(4);
 * await image.read(4096, buf);
 * console.log(buf); // Uint8Array(4) [ 7, 7, 7, 7 ]
 * await image.close();
 * ```
 */
export class QedImage implements BackingImage {
  /** The storage holding the image file. */
  readonly storage: Storage;
  #header: QedHeader;
  #geometry: QedGeometry;
  #backingName: string | undefined;
  #backing: BackingImage | null;
  #readOnly: boolean;
  #fileSize: number;
  #l1: QedTable;
  #cache: L2Cache;
  #loading = new Map<number, Promise<QedTable>>();
  #lock = new FifoLock();
  /**
   * Deferred L2 updates: entry ranges (by table offset) already set in the
   * cached, pinned table but not yet written: until the next flush, check,
   * close, backing change or need-check clear, or until more than
   * {@linkcode QED_MAX_PENDING_L2_TABLES} tables are pending; a flush always
   * precedes their write.
   */
  #pendingL2 = new Map<number, { first: number; last: number }>();
  /** Bytes of clusters the entries in {@linkcode #pendingL2} newly map. */
  #pendingBytes = 0;
  readonly #maxPendingBytes: number;
  /** The background settle in progress (see {@linkcode #settleInBackground}). */
  #settling: Promise<void> | undefined;
  /** A background settle's failure, for the next flush() to report. */
  #settleError: unknown;
  #zeros: Uint8Array | undefined;
  /** Set when corruption is known to remain: need-check is then left set. */
  #inconsistent = false;
  #closed = false;
  #clock: Clock | null;
  #timer: AbortController | null = null;
  #timerTask: Promise<void> | null = null;
  #inflight = 0;
  #drained: (() => void)[] = [];

  private constructor(
    storage: Storage,
    state: {
      header: QedHeader;
      geometry: QedGeometry;
      backingName: string | undefined;
      backing: BackingImage | null;
      readOnly: boolean;
      fileSize: number;
      l1: QedTable;
      cacheSize: number;
      clock: Clock | null;
      maxPendingBytes: number;
    },
  ) {
    this.storage = storage;
    this.#header = state.header;
    this.#geometry = state.geometry;
    this.#backingName = state.backingName;
    this.#backing = state.backing;
    this.#readOnly = state.readOnly;
    this.#fileSize = state.fileSize;
    this.#l1 = state.l1;
    this.#cache = new L2Cache(state.cacheSize);
    this.#clock = state.clock;
    this.#maxPendingBytes = state.maxPendingBytes;
  }

  /**
   * Writes a new, empty image exactly as `qemu-img create -f qed` does: the
   * file is truncated, the 64-byte header written at 0, the backing name (no
   * NUL) at 64, and `table_size * cluster_size` explicit zero bytes (the L1
   * table) at `cluster_size`; the file ends up `(1 + table_size)` clusters long.
   *
   * @throws {QedOptionError} with qemu-img's text for a bad cluster size,
   * table size or image size; table_size 1 is refused because qemu 7.2 cannot
   * open such images; a backing name that does not fit the header cluster is
   * refused (qemu would write an image it cannot open).
   */
  static async create(storage: Storage, options: QedCreateOptions): Promise<void> {
    const clusterSize = options.clusterSize ?? QED_DEFAULT_CLUSTER_SIZE;
    const tableSize = options.tableSize ?? QED_DEFAULT_TABLE_SIZE;
    if (
      !isPowerOfTwo(clusterSize) || clusterSize < QED_MIN_CLUSTER_SIZE ||
      clusterSize > QED_MAX_CLUSTER_SIZE
    ) {
      optionError(
        "QED_BAD_CLUSTER_SIZE",
        `QED cluster size must be within range [${QED_MIN_CLUSTER_SIZE}, ${QED_MAX_CLUSTER_SIZE}] and power of 2`,
      );
    }
    if (
      !isPowerOfTwo(tableSize) || tableSize < QED_MIN_TABLE_SIZE || tableSize > QED_MAX_TABLE_SIZE
    ) {
      optionError(
        "QED_BAD_TABLE_SIZE",
        `QED table size must be within range [${QED_MIN_TABLE_SIZE}, ${QED_MAX_TABLE_SIZE}] and power of 2`,
      );
    }
    if (tableSize === 1) {
      optionError(
        "QED_TABLE_SIZE_ONE",
        "QED table size 1 is refused: qemu 7.2 cannot open such images " +
          "('QED table offset is invalid'); use a table size of 2 or more",
      );
    }
    if (!Number.isSafeInteger(options.size) || options.size < 0) {
      optionError("QED_BAD_IMAGE_SIZE", "Invalid image size specified");
    }
    const size = Math.ceil(options.size / 512) * 512;
    const max = qedMaxImageSize(clusterSize, tableSize);
    if (size > max || size > Number.MAX_SAFE_INTEGER) {
      optionError(
        "QED_IMAGE_SIZE_TOO_LARGE",
        `QED image size must be a non-zero multiple of cluster size and less than ${max} bytes`,
      );
    }
    const name = options.backingFile ? encoder.encode(options.backingFile) : new Uint8Array(0);
    if (name.length >= QED_MAX_BACKING_NAME || QED_HEADER_BYTES + name.length > clusterSize) {
      optionError(
        "QED_BACKING_NAME_TOO_LONG",
        `QED backing file name is too long (${name.length} bytes; at most ${
          Math.min(QED_MAX_BACKING_NAME - 1, clusterSize - QED_HEADER_BYTES)
        } fit in the header)`,
      );
    }
    let features = 0n;
    if (name.length > 0) {
      features |= QED_F_BACKING_FILE;
      if (options.backingFormat === "raw") features |= QED_F_BACKING_FORMAT_NO_PROBE;
    }
    const header: QedHeader = {
      magic: QED_MAGIC,
      clusterSize,
      tableSize,
      headerSize: 1,
      features,
      compatFeatures: 0n,
      autoclearFeatures: 0n,
      l1TableOffset: clusterSize,
      imageSize: size,
      backingFilenameOffset: name.length > 0 ? QED_HEADER_BYTES : 0,
      backingFilenameSize: name.length,
    };
    await storage.truncate(0);
    await storage.write(0, encodeHeader(header));
    if (name.length > 0) await storage.write(QED_HEADER_BYTES, name);
    await storage.write(clusterSize, new Uint8Array(clusterSize * tableSize));
    await storage.flush();
  }

  /**
   * Opens an image, validating the header with qemu's checks and texts (§2).
   * A read-write open clears unknown auto-clear bits (64-byte header write and
   * flush) and, when need-check is set, runs the repairing check. The storage
   * is not written when the open fails validation.
   *
   * @throws {QedFormatError} with qemu's text on the first failed check.
   */
  static async open(storage: Storage, options: QedOpenOptions = {}): Promise<QedImage> {
    const readOnly = options.readOnly ?? false;
    const head = new Uint8Array(QED_HEADER_BYTES);
    let fileLength: number;
    try {
      await readFull(storage, 0, head);
      fileLength = await storage.size();
    } catch (cause) {
      throw new QedFormatError("QED_HEADER_READ", "Failed to read QED header", { cause });
    }
    const header = decodeHeader(head);
    const geometry = validateHeader(header, fileLength);
    let backingName: string | undefined;
    if ((header.features & QED_F_BACKING_FILE) !== 0n) {
      const size = header.backingFilenameSize;
      if (size >= QED_MAX_BACKING_NAME) {
        throw new QedFormatError("QED_BACKING_NAME_READ", "Failed to read backing filename");
      }
      if (size > 0) {
        const name = new Uint8Array(size);
        try {
          await readFull(storage, header.backingFilenameOffset, name);
        } catch (cause) {
          throw new QedFormatError("QED_BACKING_NAME_READ", "Failed to read backing filename", {
            cause,
          });
        }
        backingName = decoder.decode(name);
      }
    }
    const l1 = QedTable.empty(geometry.tableNelems);
    try {
      await readFull(storage, header.l1TableOffset, l1.bytes);
    } catch (cause) {
      throw new QedFormatError("QED_L1_READ", "Failed to read L1 table", { cause });
    }
    if (!readOnly && (header.autoclearFeatures & ~QED_AUTOCLEAR_FEATURE_MASK) !== 0n) {
      // qemu clears unknown auto-clear bits on a read-write open (before the
      // L1 read; done after it here so a failed open leaves the file alone).
      header.autoclearFeatures &= QED_AUTOCLEAR_FEATURE_MASK;
      await storage.write(0, encodeHeader(header));
      await storage.flush();
    }
    const image = new QedImage(storage, {
      header,
      geometry,
      backingName,
      backing: options.backing ?? null,
      readOnly,
      fileSize: Math.floor(fileLength / geometry.clusterSize) * geometry.clusterSize,
      l1,
      cacheSize: options.l2CacheSize ?? QED_DEFAULT_L2_CACHE_SIZE,
      clock: options.clock ?? null,
      maxPendingBytes: options.maxPendingL2Bytes ?? QED_MAX_PENDING_L2_BYTES,
    });
    if (!readOnly && (options.repairOnOpen ?? true) && image.needsCheck) {
      let result: QedCheckResult;
      try {
        result = await image.check({ repair: "all" });
      } catch (cause) {
        throw new QedFormatError("QED_CORRUPTED", "Image corrupted", { cause });
      }
      if (result.checkErrors > 0) {
        throw new QedFormatError("QED_CORRUPTED", "Image corrupted");
      }
    }
    return image;
  }

  /** A copy of the in-memory header. */
  get header(): QedHeader {
    return { ...this.#header };
  }

  /** The geometry derived from the header. */
  get geometry(): QedGeometry {
    return { ...this.#geometry };
  }

  /** Guest-visible size in bytes. */
  get size(): number {
    return this.#header.imageSize;
  }

  /** Cluster size in bytes. */
  get clusterSize(): number {
    return this.#geometry.clusterSize;
  }

  /** Table size in clusters. */
  get tableSize(): number {
    return this.#geometry.tableSize;
  }

  /** The in-memory file size: where the next allocation goes. */
  get fileSize(): number {
    return this.#fileSize;
  }

  /** Whether the image was opened read-only. */
  get readOnly(): boolean {
    return this.#readOnly;
  }

  /** Whether the need-check ("dirty") bit is set in the header. */
  get needsCheck(): boolean {
    return (this.#header.features & QED_F_NEED_CHECK) !== 0n;
  }

  /** The stored backing file name, verbatim; `undefined` when there is none. */
  get backingFile(): string | undefined {
    return this.#backingName;
  }

  /** `"raw"` when the header says not to probe the backing format, else `undefined`. */
  get backingFormat(): "raw" | undefined {
    return this.#backingName !== undefined &&
        (this.#header.features & QED_F_BACKING_FORMAT_NO_PROBE) !== 0n
      ? "raw"
      : undefined;
  }

  /** The image unallocated ranges are read from (`null`: zeros). */
  get backing(): BackingImage | null {
    return this.#backing;
  }

  /** Attaches (or detaches, with `null`) the opened backing image. */
  set backing(backing: BackingImage | null) {
    this.#backing = backing;
  }

  /**
   * Reads `buf.length` bytes at `offset`: data clusters from the file, zero
   * clusters as zeros, unallocated ranges from the backing image (zeros past
   * its end, or with no backing image).
   *
   * @throws {QedIoError} `QED_INVALID_OFFSET` when a table or cluster offset
   * on the way is invalid (qemu: `EINVAL`).
   */
  async read(offset: number, buf: Uint8Array): Promise<void> {
    this.#checkRange(offset, buf.length);
    this.#begin();
    try {
      let done = 0;
      while (done < buf.length) {
        const pos = offset + done;
        const run = await this.#lookup(pos, this.#pieceLength(pos, buf.length - done));
        const part = buf.subarray(done, done + run.length);
        if (run.kind === "data") await readFull(this.storage, run.host, part);
        else if (run.kind === "zero") part.fill(0);
        else await this.#readBacking(pos, part);
        done += run.length;
      }
    } finally {
      this.#end();
    }
  }

  /**
   * Writes `data` at `offset`: in place over data clusters; elsewhere as an
   * allocating write in qemu's order (see the module documentation). A
   * partial write into a zero cluster fills the rest of the new cluster with
   * zeros, as the specification says (qemu 7.2 copies backing data, §14.2).
   *
   * @throws {QedIoError} `QED_READ_ONLY`, `QED_OUT_OF_RANGE`, `QED_INVALID_OFFSET`.
   */
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#checkWritable();
    this.#checkRange(offset, data.length);
    this.#begin();
    try {
      await this.#writeRange(offset, data);
    } finally {
      this.#end();
    }
  }

  /**
   * Writes zeros: whole clusters over unallocated or zero clusters become
   * zero clusters (L2 entry 1, no data); data clusters are overwritten with
   * zeros in place; an unaligned head and tail are written as explicit zeros.
   */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#checkWritable();
    this.#checkRange(offset, length);
    this.#begin();
    try {
      const cs = this.#geometry.clusterSize;
      const end = offset + length;
      let pos = offset;
      const headEnd = Math.min(end, Math.ceil(pos / cs) * cs);
      if (pos < headEnd) {
        await this.#writeZeroBytes(pos, headEnd - pos);
        pos = headEnd;
      }
      const alignedEnd = Math.max(pos, Math.floor(end / cs) * cs);
      while (pos < alignedEnd) {
        const len = this.#pieceLength(pos, alignedEnd - pos);
        pos += await this.#zeroClusters(pos, len);
      }
      if (pos < end) await this.#writeZeroBytes(pos, end - pos);
    } finally {
      this.#end();
    }
  }

  /**
   * The allocation state of the run starting at `offset`: at most `length`
   * bytes, never past the image end or an L2 table boundary.
   */
  async blockStatus(offset: number, length: number): Promise<QedExtent> {
    this.#checkRange(offset, 0);
    const len = Math.max(0, Math.min(length, this.size - offset));
    if (len === 0) return { kind: "unallocated", offset, length: 0 };
    this.#begin();
    try {
      const run = await this.#lookup(offset, this.#pieceLength(offset, len));
      return run.kind === "data"
        ? { kind: "data", offset, length: run.length, hostOffset: run.host }
        : { kind: run.kind, offset, length: run.length };
    } finally {
      this.#end();
    }
  }

  /**
   * The merged runs over `[offset, offset + length)` (default: the whole
   * image), as `qemu-img map` reports them: adjacent runs of the same kind
   * merge, data runs only when their file offsets are contiguous too.
   */
  async map(offset = 0, length: number = this.size - offset): Promise<QedExtent[]> {
    this.#checkRange(offset, length);
    const out: QedExtent[] = [];
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const ext = await this.blockStatus(pos, end - pos);
      const last = out[out.length - 1];
      if (
        last && last.kind === ext.kind &&
        (ext.kind !== "data" || last.hostOffset! + last.length === ext.hostOffset)
      ) {
        last.length += ext.length;
      } else {
        out.push(ext);
      }
      pos += ext.length;
    }
    return out;
  }

  /**
   * Makes every completed write durable. When need-check is set and the image
   * is not known to be inconsistent, then clears it like qemu's drain does:
   * flush, 512-byte header write, flush (allocating writes wait meanwhile).
   */
  async flush(): Promise<void> {
    this.#checkOpen();
    if (this.#readOnly) return;
    this.#cancelNeedCheckTimer();
    if (this.#pendingL2.size > 0 || this.#settling) {
      const release = await this.#lock.acquire();
      try {
        await this.#settleL2();
      } finally {
        release();
      }
    }
    if (!this.needsCheck || this.#inconsistent) await this.storage.flush();
    else await this.#clearNeedCheck();
    const failed = this.#settleError;
    this.#settleError = undefined;
    if (failed !== undefined) throw failed;
  }

  /**
   * Rewrites the header to name a new backing file (or none, with `null` or
   * `""`), as qemu's change-backing-file does (§12.1): the backing feature
   * bits are recomputed (`NO_PROBE` iff `format` is exactly `"raw"`), the
   * name is placed at offset 64, exactly `64 + length` bytes are written at 0
   * and flushed; old name bytes past that are left as they are. Unlike
   * qemu, every L2 entry (deferred ones written first) is flushed before
   * the header changes. The attached {@linkcode backing} image is not
   * changed.
   *
   * @throws {QedIoError} `QED_NO_SPACE` when the name does not fit the header
   * area (qemu: `ENOSPC`), `QED_UNSUPPORTED` when naming a backing file while
   * unknown compatible feature bits are set (qemu: `ENOTSUP`).
   */
  async changeBackingFile(name: string | null, format?: string): Promise<void> {
    this.#checkWritable();
    const bytes = name ? encoder.encode(name) : new Uint8Array(0);
    if (bytes.length > 0 && (this.#header.compatFeatures & ~QED_COMPAT_FEATURE_MASK) !== 0n) {
      throw new QedIoError(
        "QED_UNSUPPORTED",
        "Operation not supported: the image has unknown compatible features",
      );
    }
    const room = this.#geometry.headerSize * this.#geometry.clusterSize;
    if (QED_HEADER_BYTES + bytes.length > room || bytes.length >= QED_MAX_BACKING_NAME) {
      throw new QedIoError(
        "QED_NO_SPACE",
        `No space left on device: a ${bytes.length}-byte backing file name does not fit the ${room}-byte header area`,
      );
    }
    const release = await this.#lock.acquire();
    try {
      await this.#settleL2();
      // Every L2 entry must be durable before the header stops naming (or
      // changes) the backing file: an entry lost after that would read as
      // zeros or from the wrong file, not from the old backing file (qemu
      // does not flush here; a stream's last copied clusters were lost).
      // block/_stream_common.ts also flushes before calling this.
      await this.storage.flush();
      const header = { ...this.#header };
      header.features &= ~(QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE);
      if (bytes.length > 0) {
        header.features |= QED_F_BACKING_FILE;
        if (format === "raw") header.features |= QED_F_BACKING_FORMAT_NO_PROBE;
      }
      header.backingFilenameOffset = QED_HEADER_BYTES;
      header.backingFilenameSize = bytes.length;
      const out = new Uint8Array(QED_HEADER_BYTES + bytes.length);
      out.set(encodeHeader(header));
      out.set(bytes, QED_HEADER_BYTES);
      await this.storage.write(0, out);
      await this.storage.flush();
      this.#header = header;
      this.#backingName = bytes.length > 0 ? name! : undefined;
    } finally {
      release();
    }
  }

  /**
   * Checks the image's metadata as qemu's QED check does (§11.1): every L1
   * and L2 offset valid, every cluster referenced once, unreferenced clusters
   * counted as leaks. With `repair`, invalid entries are zeroed (the whole
   * table rewritten) and, when no corruption or I/O error remains, the
   * need-check bit is cleared (flush, 64-byte header write). Duplicates and
   * leaks are never repaired.
   */
  async check(options: QedCheckOptions = {}): Promise<QedCheckResult> {
    this.#checkOpen();
    const repair = options.repair !== undefined;
    if (repair) this.#checkWritable();
    const release = await this.#lock.acquire();
    try {
      await this.#settleL2();
      const result = await this.#check(repair);
      this.#inconsistent = result.corruptions > 0;
      return result;
    } finally {
      release();
    }
  }

  /**
   * Waits for requests in flight, flushes (clearing need-check when the image
   * is consistent, see {@linkcode flush}) and closes the storage. Unlike
   * qemu, which clears need-check on close unconditionally, the bit stays
   * set when corruption is known to remain, so the next read-write open
   * checks again.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#cancelNeedCheckTimer();
    await this.#timerTask;
    while (this.#inflight > 0) {
      await new Promise<void>((resolve) => this.#drained.push(resolve));
    }
    try {
      if (!this.#readOnly) await this.flush();
    } finally {
      this.#closed = true;
      this.#cache.clear();
      await this.storage.close();
    }
  }

  // ---- internals -------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new QedIoError("QED_CLOSED", "The image is closed");
  }

  #checkWritable(): void {
    this.#checkOpen();
    if (this.#readOnly) throw new QedIoError("QED_READ_ONLY", "The image is opened read-only");
  }

  #checkRange(offset: number, length: number): void {
    this.#checkOpen();
    if (
      !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 ||
      length < 0 || offset + length > this.size
    ) {
      throw new QedIoError(
        "QED_OUT_OF_RANGE",
        `Request [${offset}, +${length}) is outside the image (size ${this.size})`,
      );
    }
  }

  #begin(): void {
    this.#inflight++;
  }

  #end(): void {
    if (--this.#inflight === 0 && this.#drained.length > 0) {
      const waiters = this.#drained;
      this.#drained = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** `length` capped at the end of the L2 table mapping `pos`. */
  #pieceLength(pos: number, length: number): number {
    const span = this.#geometry.l2Span;
    return Math.min(length, span - (pos % span));
  }

  #invalid(what: string, value: number): QedIoError {
    this.#inconsistent = true;
    return new QedIoError(
      "QED_INVALID_OFFSET",
      `Invalid argument: ${what} offset 0x${value.toString(16)} is invalid`,
    );
  }

  /** The L2 table at `offset`, from the cache or read once however many ask. */
  #loadTable(offset: number): Promise<QedTable> | QedTable {
    const cached = this.#cache.get(offset);
    if (cached) return cached;
    let loading = this.#loading.get(offset);
    if (!loading) {
      loading = (async () => {
        const table = QedTable.empty(this.#geometry.tableNelems);
        await readFull(this.storage, offset, table.bytes);
        const raced = this.#cache.get(offset);
        if (raced) return raced;
        this.#cache.set(offset, table);
        return table;
      })().finally(() => this.#loading.delete(offset));
      this.#loading.set(offset, loading);
    }
    return loading;
  }

  /**
   * The run of clusters in one state starting at `pos`, at most `len` bytes
   * (`len` never crosses an L2 boundary). Every entry of a data run is
   * validated (qemu checks only the first, §6.4).
   */
  #lookup(pos: number, len: number): Run | Promise<Run> {
    const g = this.#geometry;
    const l2Offset = this.#l1.get(Math.floor(pos / g.l2Span));
    if (l2Offset === QED_UNALLOCATED) return { kind: "unallocated", length: len, host: 0 };
    if (!isValidTableOffset(l2Offset, g, this.#fileSize)) throw this.#invalid("L2 table", l2Offset);
    const table = this.#loadTable(l2Offset);
    return table instanceof QedTable
      ? this.#scan(table, pos, len)
      : table.then((t) => this.#scan(t, pos, len));
  }

  /** The run at `pos` in an L2 table. */
  #scan(table: QedTable, pos: number, len: number): Run {
    const g = this.#geometry;
    const cs = g.clusterSize;
    const within = pos % cs;
    const index = Math.floor((pos % g.l2Span) / cs);
    const n = Math.ceil((within + len) / cs);
    const first = table.get(index);
    let count = 1;
    if (first === QED_UNALLOCATED || first === QED_ZERO_CLUSTER) {
      while (count < n && table.get(index + count) === first) count++;
      const length = Math.min(len, count * cs - within);
      return { kind: first === QED_ZERO_CLUSTER ? "zero" : "unallocated", length, host: 0 };
    }
    if (!isValidClusterOffset(first, g, this.#fileSize)) throw this.#invalid("cluster", first);
    while (count < n) {
      const entry = table.get(index + count);
      if (entry !== first + count * cs || !isValidClusterOffset(entry, g, this.#fileSize)) break;
      count++;
    }
    return { kind: "data", length: Math.min(len, count * cs - within), host: first + within };
  }

  /** Backing bytes at `pos`, zeros past the backing image's end (§7). */
  async #readBacking(pos: number, buf: Uint8Array): Promise<void> {
    const backing = this.#backing;
    const available = backing ? backing.size - pos : 0;
    if (available < buf.length) buf.fill(0, Math.max(0, available));
    if (backing && available > 0) {
      await backing.read(pos, available < buf.length ? buf.subarray(0, available) : buf);
    }
  }

  /** Whether the image has a backing file: then flushes order metadata, not need-check. */
  get #hasBacking(): boolean {
    return this.#backing !== null || this.#backingName !== undefined;
  }

  #zeroBuffer(): Uint8Array {
    return this.#zeros ??= new Uint8Array(Math.min(ZERO_CHUNK, this.#geometry.clusterSize));
  }

  /** Writes `length` zero bytes at file offset `host`. */
  async #writeZerosAt(host: number, length: number): Promise<void> {
    const zeros = this.#zeroBuffer();
    for (let done = 0; done < length; done += zeros.length) {
      await this.storage.write(
        host + done,
        zeros.subarray(0, Math.min(zeros.length, length - done)),
      );
    }
  }

  /** Writes explicit zeros at guest `pos` through the normal write path. */
  async #writeZeroBytes(pos: number, length: number): Promise<void> {
    const zeros = this.#zeroBuffer();
    for (let done = 0; done < length; done += zeros.length) {
      await this.#writeRange(pos + done, zeros.subarray(0, Math.min(zeros.length, length - done)));
    }
  }

  async #writeRange(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const len = this.#pieceLength(pos, data.length - done);
      done += await this.#writePiece(pos, data.subarray(done, done + len));
    }
  }

  /** Writes the first run of `data` (inside one L2 table); returns the bytes written. */
  async #writePiece(pos: number, data: Uint8Array): Promise<number> {
    const lookup = this.#lookup(pos, data.length);
    let run = lookup instanceof Promise ? await lookup : lookup;
    if (run.kind === "data") {
      await this.storage.write(run.host, data.subarray(0, run.length));
      return run.length;
    }
    // A lookup answered from memory and an uncontended lock leave no gap in
    // which another request could allocate: otherwise look up again.
    let release = lookup instanceof Promise ? undefined : this.#lock.tryAcquire();
    try {
      if (!release) {
        release = await this.#lock.acquire();
        this.#checkOpen();
        run = await this.#lookup(pos, data.length);
      }
      if (run.kind === "data") {
        await this.storage.write(run.host, data.subarray(0, run.length));
      } else {
        await this.#allocateData(pos, data.subarray(0, run.length), run.kind === "unallocated");
      }
      return run.length;
    } finally {
      release?.();
      this.#armNeedCheckTimer();
    }
  }

  /**
   * Allocates clusters for `data` at `pos` (one run, lock held) and writes
   * prefill, postfill, data, [flush], then the L2/L1 update.
   */
  async #allocateData(pos: number, data: Uint8Array, fromBacking: boolean): Promise<void> {
    const cs = this.#geometry.clusterSize;
    const start = Math.floor(pos / cs) * cs;
    const end = pos + data.length;
    const clusterEnd = Math.ceil(end / cs) * cs;
    const count = (clusterEnd - start) / cs;
    const needCheck = this.#setNeedCheck();
    if (needCheck) await needCheck;
    const host = this.#fileSize;
    this.#fileSize += count * cs;
    if (pos > start) await this.#fill(host, start, pos - start, fromBacking);
    if (end < clusterEnd) {
      await this.#fill(host + (end - start), end, clusterEnd - end, fromBacking);
    }
    await this.storage.write(host + (pos - start), data);
    // qemu writes the L2 sector right after the data: with a backing file
    // after a flush (so no entry points at copied backing data a power cut
    // lost), without one with no flush, relying on need-check (§10). Here an
    // update of an existing table waits in the pinned cached table and is
    // written, with its neighbours coalesced per table, by #settleL2: at
    // flush(), close(), check(), changeBackingFile(), before need-check is
    // cleared, before a zero-cluster update, and when too many tables are
    // pending. One flush then serves every write before it: a stream into
    // an overlay flushes once per settle, not once per chunk (177 fdatasyncs
    // for 1 GiB, 40 % of the stream's time, before this).
    // This is crash-safe: (1) a write not followed by a completed flush()
    // carries no durability promise, and until the entry is on disk the
    // cluster reads as it did before (from the backing file, unallocated or
    // zero: the write lost whole, never half a cluster of backing data);
    // (2) #settleL2 flushes before writing the entries, so an entry on disk
    // never points at lost data, and the need-check header write (made
    // before the data) is durable before it; (3) whatever else a cut leaves
    // (a new table's L1 sector, leaked clusters) is what qemu's order leaves
    // too, and is repaired as there; (4) after flush() every entry is on
    // disk and the bytes of the file are exactly qemu's. New L2 tables keep
    // qemu's order.
    const deferred = this.#deferL2(start, count, host);
    if (deferred === true || (deferred !== false && await deferred)) {
      this.#pendingBytes += count * cs;
      if (this.#pendingBytes >= this.#maxPendingBytes && !this.#settling) {
        this.#settleInBackground();
      }
      return;
    }
    if (this.#hasBacking) {
      await this.storage.flush();
      await this.#writePendingL2();
    }
    await this.#updateL2(start, count, (i) => host + i * cs);
  }

  /**
   * Sets `count` L2 entries from guest `start` to `host + i * clusterSize` in
   * the cached table only, to be written by {@linkcode #settleL2}; returns
   * false (nothing done) when the L2 table does not exist yet.
   */
  #deferL2(start: number, count: number, host: number): boolean | Promise<boolean> {
    const g = this.#geometry;
    const l2Offset = this.#l1.get(Math.floor(start / g.l2Span));
    if (l2Offset === QED_UNALLOCATED || !isValidTableOffset(l2Offset, g, this.#fileSize)) {
      return false;
    }
    const cached = this.#pendingL2.has(l2Offset) ? this.#cache.get(l2Offset) : undefined;
    // The common case, another entry of a pending (pinned) table, needs no await.
    return cached
      ? this.#deferInto(cached, l2Offset, start, count, host)
      : this.#deferLoaded(l2Offset, start, count, host);
  }

  /** {@linkcode #deferL2} for a table not pending yet: bound, load, then defer. */
  async #deferLoaded(
    l2Offset: number,
    start: number,
    count: number,
    host: number,
  ): Promise<boolean> {
    if (
      !this.#pendingL2.has(l2Offset) &&
      this.#pendingL2.size >= Math.min(QED_MAX_PENDING_L2_TABLES, this.#cache.capacity)
    ) {
      // Bounded: write what is pending (after a flush) before adding a table.
      await this.#settleL2();
    }
    const cached = this.#loadTable(l2Offset);
    const loaded = cached instanceof QedTable ? cached : await cached;
    const table = this.#cache.get(l2Offset) ?? loaded;
    this.#cache.set(l2Offset, table);
    return this.#deferInto(table, l2Offset, start, count, host);
  }

  /** Sets the entries in the cached `table` and records them as pending. */
  #deferInto(
    table: QedTable,
    l2Offset: number,
    start: number,
    count: number,
    host: number,
  ): boolean {
    const g = this.#geometry;
    const first = Math.floor((start % g.l2Span) / g.clusterSize);
    for (let i = 0; i < count; i++) table.set(first + i, host + i * g.clusterSize);
    const range = this.#pendingL2.get(l2Offset);
    if (range) {
      range.first = Math.min(range.first, first);
      range.last = Math.max(range.last, first + count - 1);
    } else {
      this.#cache.pin(l2Offset);
      this.#pendingL2.set(l2Offset, { first, last: first + count - 1 });
    }
    return true;
  }

  /**
   * Flushes, then writes the deferred L2 entries (lock held): the flush makes
   * their data durable first, with or without a backing file.
   */
  async #settleL2(): Promise<void> {
    await this.#settling;
    if (this.#pendingL2.size === 0) return;
    await this.storage.flush();
    await this.#writePendingL2();
  }

  /**
   * Settles the deferred entries without holding writes up (lock held for
   * the synchronous part only): the sectors holding them are copied as they
   * are now, every one pointing at data already written; then, in the
   * background, a flush makes that data durable and the copies are written.
   * Entries deferred meanwhile wait for the next settle, and every other L2
   * or L1 write waits for this one ({@linkcode #settling}), so no older copy
   * lands after a newer sector. The tables stay pinned until their copy is
   * on disk. On failure the tables are dropped from the cache, as
   * {@linkcode #writePendingL2} does, and the next flush() reports it.
   */
  #settleInBackground(): void {
    const snapshot = [...this.#pendingL2].map(([l2Offset, range]) => {
      const sector = this.#cache.get(l2Offset)!.sectorRange(range.first, range.last);
      return { at: l2Offset + sector.offset, l2Offset, bytes: sector.bytes.slice() };
    });
    this.#pendingL2.clear();
    this.#pendingBytes = 0;
    const settle = async () => {
      let written = 0;
      try {
        await this.storage.flush();
        for (const s of snapshot) {
          await this.storage.write(s.at, s.bytes);
          this.#cache.unpin(s.l2Offset);
          written++;
        }
      } catch (error) {
        for (const s of snapshot.slice(written)) {
          this.#cache.delete(s.l2Offset);
          this.#cache.unpin(s.l2Offset);
          if (this.#pendingL2.delete(s.l2Offset)) this.#cache.unpin(s.l2Offset);
        }
        this.#settleError ??= error;
      }
    };
    this.#settling = settle().finally(() => this.#settling = undefined);
  }

  /**
   * Writes the deferred L2 entries, whose data a flush has just made durable
   * (lock held). On failure the tables are dropped from the cache, so the
   * entries not written read as before (from the backing file).
   */
  async #writePendingL2(): Promise<void> {
    const pending = [...this.#pendingL2];
    this.#pendingL2.clear();
    this.#pendingBytes = 0;
    let failure: { error: unknown } | undefined;
    for (const [l2Offset, range] of pending) {
      const table = this.#cache.get(l2Offset);
      try {
        if (!failure && table) {
          const sector = table.sectorRange(range.first, range.last);
          await this.storage.write(l2Offset + sector.offset, sector.bytes);
        } else this.#cache.delete(l2Offset);
      } catch (error) {
        failure = { error };
        this.#cache.delete(l2Offset);
      } finally {
        this.#cache.unpin(l2Offset);
      }
    }
    if (failure) throw failure.error;
  }

  /** Copy-on-write fill of a new cluster: backing data, or zeros. */
  async #fill(host: number, pos: number, length: number, fromBacking: boolean): Promise<void> {
    if (fromBacking && this.#backing && pos < this.#backing.size) {
      const buf = new Uint8Array(length);
      await this.#readBacking(pos, buf);
      await this.storage.write(host, buf);
    } else {
      await this.#writeZerosAt(host, length);
    }
  }

  /** Aligned zero write of one piece: returns the bytes handled. */
  async #zeroClusters(pos: number, len: number): Promise<number> {
    let run = await this.#lookup(pos, len);
    if (run.kind === "zero") return run.length;
    if (run.kind === "data") {
      await this.#writeZerosAt(run.host, run.length);
      return run.length;
    }
    const release = await this.#lock.acquire();
    try {
      this.#checkOpen();
      await this.#settleL2();
      run = await this.#lookup(pos, len);
      if (run.kind === "data") await this.#writeZerosAt(run.host, run.length);
      else if (run.kind === "unallocated") {
        const needCheck = this.#setNeedCheck();
        if (needCheck) await needCheck;
        await this.#updateL2(pos, run.length / this.#geometry.clusterSize, () => QED_ZERO_CLUSTER);
      }
      return run.length;
    } finally {
      release();
      this.#armNeedCheckTimer();
    }
  }

  /**
   * Points `count` L2 entries from guest `start` (cluster aligned, inside one
   * table) at `value(i)` (lock held). A missing table is allocated after the
   * data, written whole and flushed before the L1 sector; an existing table
   * has only the 512-byte sectors holding the entries rewritten.
   */
  async #updateL2(start: number, count: number, value: (i: number) => number): Promise<void> {
    // An older snapshot still being written must not land after this update.
    await this.#settling;
    const g = this.#geometry;
    const l1Index = Math.floor(start / g.l2Span);
    const first = Math.floor((start % g.l2Span) / g.clusterSize);
    const l2Offset = this.#l1.get(l1Index);
    if (l2Offset === QED_UNALLOCATED) {
      const tableOffset = this.#fileSize;
      this.#fileSize += g.tableBytes;
      const table = QedTable.empty(g.tableNelems);
      for (let i = 0; i < count; i++) table.set(first + i, value(i));
      await this.storage.write(tableOffset, table.bytes);
      await this.storage.flush();
      this.#l1.set(l1Index, tableOffset);
      this.#cache.set(tableOffset, table);
      const sector = this.#l1.sectorRange(l1Index, l1Index);
      try {
        await this.storage.write(this.#header.l1TableOffset + sector.offset, sector.bytes);
      } catch (e) {
        this.#l1.set(l1Index, QED_UNALLOCATED);
        this.#cache.delete(tableOffset);
        throw e;
      }
      return;
    }
    if (!isValidTableOffset(l2Offset, g, this.#fileSize)) throw this.#invalid("L2 table", l2Offset);
    const cached = this.#loadTable(l2Offset);
    const loaded = cached instanceof QedTable ? cached : await cached;
    // Pinned while updated so no lookup can reload a stale copy from disk.
    this.#cache.pin(l2Offset);
    try {
      const table = this.#cache.get(l2Offset) ?? loaded;
      this.#cache.set(l2Offset, table);
      for (let i = 0; i < count; i++) table.set(first + i, value(i));
      const sector = table.sectorRange(first, first + count - 1);
      try {
        await this.storage.write(l2Offset + sector.offset, sector.bytes);
      } catch (e) {
        this.#cache.delete(l2Offset);
        throw e;
      }
    } finally {
      this.#cache.unpin(l2Offset);
    }
  }

  /**
   * Sets need-check before the first allocation of an image without backing
   * file (lock held). Every allocation cancels a pending need-check timer.
   * Returns `undefined` when there is nothing to write (the common case: no
   * await on the hot path).
   */
  #setNeedCheck(): Promise<void> | undefined {
    this.#cancelNeedCheckTimer();
    if (this.#hasBacking || this.needsCheck) return undefined;
    this.#header.features |= QED_F_NEED_CHECK;
    return this.#writeHeaderSector();
  }

  /**
   * Clears need-check like qemu's timer and drain: with allocating writes held
   * off, flush, 512-byte header write, flush.
   */
  async #clearNeedCheck(): Promise<void> {
    const release = await this.#lock.acquire();
    try {
      await this.#settleL2();
      await this.storage.flush();
      if (this.needsCheck && !this.#inconsistent && !this.#closed) {
        this.#header.features &= ~QED_F_NEED_CHECK;
        await this.#writeHeaderSector();
        await this.storage.flush();
      }
    } finally {
      release();
    }
  }

  /** After the last queued allocating write: clear need-check once the clock says so. */
  #armNeedCheckTimer(): void {
    const clock = this.#clock;
    if (!clock || this.#closed || !this.needsCheck || this.#inconsistent || this.#lock.busy) return;
    this.#cancelNeedCheckTimer();
    const timer = new AbortController();
    this.#timer = timer;
    this.#timerTask = clock.sleep(QED_NEED_CHECK_TIMEOUT_MS, timer.signal)
      .then(() => this.#clearNeedCheck())
      .catch(() => {
        // Cancelled, or the flush failed: the bit stays set, which is safe.
      });
  }

  #cancelNeedCheckTimer(): void {
    this.#timer?.abort();
    this.#timer = null;
  }

  /** qemu's "write header": read-modify-write of the first 512 bytes, no flush. */
  async #writeHeaderSector(): Promise<void> {
    const sector = new Uint8Array(QED_SECTOR_BYTES);
    await readFull(this.storage, 0, sector);
    sector.set(encodeHeader(this.#header));
    await this.storage.write(0, sector);
  }

  async #check(repair: boolean): Promise<QedCheckResult> {
    const result = await checkTables({
      storage: this.storage,
      geometry: this.#geometry,
      imageSize: this.size,
      l1TableOffset: this.#header.l1TableOffset,
      l1: this.#l1,
      fileSize: this.#fileSize,
      forgetTable: (offset) => this.#cache.delete(offset),
    }, repair);
    if (result.checkErrors === 0 && repair && result.corruptions === 0 && this.needsCheck) {
      // Mark clean: the fixes reach the disk before the bit is cleared.
      await this.storage.flush();
      this.#header.features &= ~QED_F_NEED_CHECK;
      await this.storage.write(0, encodeHeader(this.#header));
    }
    return result;
  }
}
