/**
 * The 64-byte QED header: constants named as the specification names them, a
 * pure codec, the geometry derived from it, and qemu 7.2's open-time
 * validation with its exact error texts.
 *
 * ```
 *  offset  size  field                      (all little-endian)
 *  ┌──────┬─────┬──────────────────────────────────────────────┐
 *  │    0 │   4 │ magic = "QED\0" (0x00444551)                 │
 *  │    4 │   4 │ cluster_size          bytes, 2^12..2^26      │
 *  │    8 │   4 │ table_size            clusters, 1..16, 2^n   │
 *  │   12 │   4 │ header_size           clusters               │
 *  │   16 │   8 │ features              incompatible bits      │
 *  │   24 │   8 │ compat_features       ignored if unknown     │
 *  │   32 │   8 │ autoclear_features    cleared on rw open     │
 *  │   40 │   8 │ l1_table_offset       bytes, cluster aligned │
 *  │   48 │   8 │ image_size            bytes, multiple of 512 │
 *  │   56 │   4 │ backing_filename_offset  bytes from file start│
 *  │   60 │   4 │ backing_filename_size    bytes, no NUL       │
 *  └──────┴─────┴──────────────────────────────────────────────┘
 *  header area = header_size clusters; the backing name lives inside it.
 * ```
 *
 * @module
 */

import { QedFormatError } from "./error.ts";
import { isValidTableOffset } from "./table.ts";

/** The magic number, bytes `51 45 44 00` ("QED\0") read as a little-endian u32. */
export const QED_MAGIC = 0x00444551;
/** Length of the encoded header in bytes. */
export const QED_HEADER_BYTES = 64;
/** Feature bit: the image has a backing file named in the header area. */
export const QED_F_BACKING_FILE = 0x01n;
/** Feature bit: the image must be checked before read-write use ("dirty"). */
export const QED_F_NEED_CHECK = 0x02n;
/** Feature bit: the backing file is raw; do not probe its format. */
export const QED_F_BACKING_FORMAT_NO_PROBE = 0x04n;
/** Every known incompatible feature bit; any other bit makes an open fail. */
export const QED_FEATURE_MASK = QED_F_BACKING_FILE | QED_F_NEED_CHECK |
  QED_F_BACKING_FORMAT_NO_PROBE;
/** Known compatible feature bits: none are defined. */
export const QED_COMPAT_FEATURE_MASK = 0n;
/** Known auto-clear feature bits: none are defined. */
export const QED_AUTOCLEAR_FEATURE_MASK = 0n;
/** Smallest legal cluster size in bytes (4 KiB). */
export const QED_MIN_CLUSTER_SIZE = 4096;
/** Largest legal cluster size in bytes (64 MiB). */
export const QED_MAX_CLUSTER_SIZE = 67108864;
/** Smallest legal table size in clusters. */
export const QED_MIN_TABLE_SIZE = 1;
/** Largest legal table size in clusters. */
export const QED_MAX_TABLE_SIZE = 16;
/** Cluster size `qemu-img create` uses by default. */
export const QED_DEFAULT_CLUSTER_SIZE = 65536;
/** Table size `qemu-img create` uses by default. */
export const QED_DEFAULT_TABLE_SIZE = 4;
/** Backing names must be shorter than this (qemu reads them into a PATH_MAX buffer). */
export const QED_MAX_BACKING_NAME = 4096;

/** The decoded fields of a QED header. Feature sets are 64-bit `bigint`s. */
export interface QedHeader {
  /** Must equal {@linkcode QED_MAGIC}. */
  magic: number;
  /** Cluster size in bytes. */
  clusterSize: number;
  /** Size of the L1 table and of every L2 table, in clusters. */
  tableSize: number;
  /** Size of the header area, in clusters. */
  headerSize: number;
  /** Incompatible feature bits. */
  features: bigint;
  /** Compatible feature bits. */
  compatFeatures: bigint;
  /** Auto-clear feature bits. */
  autoclearFeatures: bigint;
  /** Byte offset of the L1 table. */
  l1TableOffset: number;
  /** Guest-visible size in bytes. */
  imageSize: number;
  /** Byte offset of the backing file name. */
  backingFilenameOffset: number;
  /** Length of the backing file name in bytes. */
  backingFilenameSize: number;
}

/** Values derived from a header's cluster, table and header sizes (§3 of the reference). */
export interface QedGeometry {
  /** Cluster size in bytes. */
  clusterSize: number;
  /** Table size in clusters. */
  tableSize: number;
  /** Header area size in clusters. */
  headerSize: number;
  /** Entries per table: `cluster_size * table_size / 8`. */
  tableNelems: number;
  /** Bytes of one table: `cluster_size * table_size`. */
  tableBytes: number;
  /** `log2(cluster_size)`. */
  l2Shift: number;
  /** `l2_shift + log2(table_nelems)`. */
  l1Shift: number;
  /** `table_nelems - 1`. */
  l2Mask: number;
  /** Guest bytes mapped by one L2 table: `table_nelems * cluster_size`. */
  l2Span: number;
  /** `table_nelems² * cluster_size` in unsigned 64-bit arithmetic: 0 when it wraps. */
  maxImageSize: number;
}

/** Whether `n` is a positive power of two (exact for any safe integer). */
export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n)) &&
    2 ** Math.log2(n) === n;
}

/**
 * The largest image size qemu accepts for a geometry: `table_nelems² *
 * cluster_size` computed with qemu's silent unsigned 64-bit wrap-around, so
 * it is 0 when the product reaches 2^64.
 *
 * @example
 * ```ts
 * import { qedMaxImageSize } from "./header.ts";
 * console.log(qedMaxImageSize(65536, 4)); // 70368744177664 (64 TiB)
 * console.log(qedMaxImageSize(67108864, 16)); // 0
 * ```
 */
export function qedMaxImageSize(clusterSize: number, tableSize: number): number {
  const nelems = BigInt(clusterSize) * BigInt(tableSize) / 8n;
  return Number((nelems * nelems * BigInt(clusterSize)) & 0xffff_ffff_ffff_ffffn);
}

/**
 * The geometry of a header whose cluster and table sizes are valid.
 *
 * @example
 * ```ts
 * import { qedGeometry } from "./header.ts";
 * const g = qedGeometry({ clusterSize: 65536, tableSize: 4, headerSize: 1 });
 * console.log(g.tableNelems, g.l1Shift); // 32768 31
 * ```
 */
export function qedGeometry(
  header: Pick<QedHeader, "clusterSize" | "tableSize" | "headerSize">,
): QedGeometry {
  const { clusterSize, tableSize, headerSize } = header;
  const tableNelems = clusterSize * tableSize / 8;
  const l2Shift = Math.log2(clusterSize);
  return {
    clusterSize,
    tableSize,
    headerSize,
    tableNelems,
    tableBytes: clusterSize * tableSize,
    l2Shift,
    l1Shift: l2Shift + Math.log2(tableNelems),
    l2Mask: tableNelems - 1,
    l2Span: tableNelems * clusterSize,
    maxImageSize: qedMaxImageSize(clusterSize, tableSize),
  };
}

function u64(view: DataView, at: number): number {
  return view.getUint32(at, true) + view.getUint32(at + 4, true) * 2 ** 32;
}

function putU64(view: DataView, at: number, value: number): void {
  view.setBigUint64(at, BigInt(value), true);
}

/**
 * Decodes the first 64 bytes of `bytes` (which may be a view into a larger
 * buffer). Decoding does not validate; see {@linkcode validateHeader}. 64-bit
 * offsets and sizes above 2^53 lose precision (they are invalid anyway).
 *
 * @throws {QedFormatError} `QED_HEADER_READ` when fewer than 64 bytes are given.
 *
 * @example
 * ```ts
 * import { decodeHeader, encodeHeader, QED_MAGIC } from "./header.ts";
 * const h = decodeHeader(encodeHeader({
 *   magic: QED_MAGIC, clusterSize: 65536, tableSize: 4, headerSize: 1,
 *   features: 0n, compatFeatures: 0n, autoclearFeatures: 0n,
 *   l1TableOffset: 65536, imageSize: 1 << 20, backingFilenameOffset: 0, backingFilenameSize: 0,
 * }));
 * console.log(h.imageSize); // 1048576
 * ```
 */
export function decodeHeader(bytes: Uint8Array): QedHeader {
  if (bytes.length < QED_HEADER_BYTES) {
    throw new QedFormatError("QED_HEADER_READ", "Failed to read QED header");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, QED_HEADER_BYTES);
  return {
    magic: view.getUint32(0, true),
    clusterSize: view.getUint32(4, true),
    tableSize: view.getUint32(8, true),
    headerSize: view.getUint32(12, true),
    features: view.getBigUint64(16, true),
    compatFeatures: view.getBigUint64(24, true),
    autoclearFeatures: view.getBigUint64(32, true),
    l1TableOffset: u64(view, 40),
    imageSize: u64(view, 48),
    backingFilenameOffset: view.getUint32(56, true),
    backingFilenameSize: view.getUint32(60, true),
  };
}

/**
 * Encodes a header into a fresh 64-byte array.
 *
 * @example
 * ```ts
 * import { encodeHeader, QED_MAGIC } from "./header.ts";
 * const bytes = encodeHeader({
 *   magic: QED_MAGIC, clusterSize: 65536, tableSize: 4, headerSize: 1,
 *   features: 0n, compatFeatures: 0n, autoclearFeatures: 0n,
 *   l1TableOffset: 65536, imageSize: 10485760, backingFilenameOffset: 0, backingFilenameSize: 0,
 * });
 * console.log(bytes.length, bytes[0]); // 64 81
 * ```
 */
export function encodeHeader(header: QedHeader): Uint8Array {
  const bytes = new Uint8Array(QED_HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, header.magic >>> 0, true);
  view.setUint32(4, header.clusterSize >>> 0, true);
  view.setUint32(8, header.tableSize >>> 0, true);
  view.setUint32(12, header.headerSize >>> 0, true);
  view.setBigUint64(16, BigInt.asUintN(64, header.features), true);
  view.setBigUint64(24, BigInt.asUintN(64, header.compatFeatures), true);
  view.setBigUint64(32, BigInt.asUintN(64, header.autoclearFeatures), true);
  putU64(view, 40, header.l1TableOffset);
  putU64(view, 48, header.imageSize);
  view.setUint32(56, header.backingFilenameOffset >>> 0, true);
  view.setUint32(60, header.backingFilenameSize >>> 0, true);
  return bytes;
}

function fail(code: string, message: string): never {
  throw new QedFormatError(code, message);
}

/**
 * Runs qemu 7.2's open-time header checks, in qemu's order and with its texts
 * (checks 2–10 of §2 in the reference), and returns the geometry.
 *
 * `fileLength` is the image file's length; the table-offset check uses it
 * rounded down to a cluster. Deliberate differences from qemu: table_size 1
 * is accepted (the specification allows it; qemu's overflow test rejects
 * every table offset), and an image size above 2^53 is reported as invalid
 * because it cannot be addressed exactly here.
 *
 * @throws {QedFormatError} with qemu's message on the first failed check.
 *
 * @example
 * ```ts
 * import { decodeHeader, validateHeader } from "./header.ts";
 * try {
 *   validateHeader(decodeHeader(new Uint8Array(64)), 0);
 * } catch (e) {
 *   console.log((e as Error).message); // Image not in QED format
 * }
 * ```
 */
export function validateHeader(header: QedHeader, fileLength: number): QedGeometry {
  if (header.magic !== QED_MAGIC) fail("QED_BAD_MAGIC", "Image not in QED format");
  const unknown = header.features & ~QED_FEATURE_MASK;
  if (unknown !== 0n) {
    fail("QED_UNSUPPORTED_FEATURES", `Unsupported QED features: ${unknown.toString(16)}`);
  }
  const cs = header.clusterSize;
  if (!isPowerOfTwo(cs) || cs < QED_MIN_CLUSTER_SIZE || cs > QED_MAX_CLUSTER_SIZE) {
    fail("QED_BAD_CLUSTER_SIZE", "QED cluster size is invalid");
  }
  const fileSize = Math.floor(fileLength / cs) * cs;
  const ts = header.tableSize;
  if (!isPowerOfTwo(ts) || ts < QED_MIN_TABLE_SIZE || ts > QED_MAX_TABLE_SIZE) {
    fail("QED_BAD_TABLE_SIZE", "QED table size is invalid");
  }
  const geometry = qedGeometry(header);
  if (
    header.imageSize % 512 !== 0 || header.imageSize > geometry.maxImageSize ||
    header.imageSize > Number.MAX_SAFE_INTEGER
  ) {
    fail("QED_BAD_IMAGE_SIZE", "QED image size is invalid");
  }
  if (!isValidTableOffset(header.l1TableOffset, geometry, fileSize)) {
    fail("QED_BAD_TABLE_OFFSET", "QED table offset is invalid");
  }
  if (header.headerSize > Math.floor(0xffffffff / cs)) {
    fail("QED_HEADER_TOO_LARGE", "QED header size is too large");
  }
  if (
    (header.features & QED_F_BACKING_FILE) !== 0n &&
    header.backingFilenameOffset + header.backingFilenameSize > header.headerSize * cs
  ) {
    fail("QED_BAD_BACKING_NAME_OFFSET", "QED backing filename offset is invalid");
  }
  return geometry;
}
