/**
 * L1 and L2 tables: `table_nelems` little-endian u64 entries, and the offset
 * checks qemu 7.2 applies to them (§6 of the reference).
 *
 * ```
 *  L1 entry:  0 = no L2 table         else byte offset of an L2 table
 *  L2 entry:  0 = unallocated          1 = zero cluster
 *             else byte offset of a data cluster
 *  guest pos: l1_index = pos >> l1_shift
 *             l2_index = (pos >> l2_shift) & l2_mask
 *             offset_in_cluster = pos & (cluster_size - 1)
 * ```
 *
 * Offsets are never masked: any value other than 0 or 1 that is not a valid,
 * cluster-aligned offset inside the file is invalid, as in qemu (the
 * specification's "reserved low bits" are not honoured by qemu either).
 *
 * @module
 */

import type { QedGeometry } from "./header.ts";

/** L2 entry value of an unallocated cluster (also an empty L1 entry). */
export const QED_UNALLOCATED = 0;
/** L2 entry value of a zero cluster. */
export const QED_ZERO_CLUSTER = 1;
/** Bytes per sector: table updates are written one 512-byte sector range at a time. */
export const QED_SECTOR_BYTES = 512;
/** Table entries per 512-byte sector. */
export const QED_ENTRIES_PER_SECTOR = QED_SECTOR_BYTES / 8;

const TWO_32 = 2 ** 32;

/**
 * A table held as its on-disk bytes, with entries read and written as
 * numbers. Keeping the bytes means a sector can be written back without
 * re-encoding. Values above 2^53 lose precision (they are invalid offsets).
 *
 * @example
 * ```ts
 * import { QedTable } from "./table.ts";
 * const t = new QedTable(new Uint8Array(4096));
 * t.set(3, 0x50000);
 * console.log(t.get(3), t.length); // 327680 512
 * ```
 */
export class QedTable {
  /** The encoded table (`length * 8` bytes). */
  readonly bytes: Uint8Array;
  #view: DataView;

  /** Wraps encoded bytes (not copied); the length must be a multiple of 8. */
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** An all-zero table of `nelems` entries. */
  static empty(nelems: number): QedTable {
    return new QedTable(new Uint8Array(nelems * 8));
  }

  /** Number of entries. */
  get length(): number {
    return this.bytes.length >>> 3;
  }

  /** The entry at `index`. */
  get(index: number): number {
    const at = index * 8;
    return this.#view.getUint32(at, true) + this.#view.getUint32(at + 4, true) * TWO_32;
  }

  /** Sets the entry at `index` to a non-negative integer. */
  set(index: number, value: number): void {
    const at = index * 8;
    this.#view.setUint32(at, value % TWO_32, true);
    this.#view.setUint32(at + 4, Math.floor(value / TWO_32), true);
  }

  /**
   * The byte range of whole 512-byte sectors holding entries `first..last`
   * (inclusive): what qemu writes back after updating them.
   */
  sectorRange(first: number, last: number): { offset: number; bytes: Uint8Array } {
    const start = Math.floor(first / QED_ENTRIES_PER_SECTOR) * QED_SECTOR_BYTES;
    const end = Math.min(
      this.bytes.length,
      Math.ceil((last + 1) / QED_ENTRIES_PER_SECTOR) * QED_SECTOR_BYTES,
    );
    return { offset: start, bytes: this.bytes.subarray(start, end) };
  }
}

/**
 * Decodes a table into plain numbers.
 *
 * @example
 * ```ts
 * import { decodeTable, encodeTable } from "./table.ts";
 * console.log(decodeTable(encodeTable([0, 1, 0x50000]))); // [0, 1, 327680]
 * ```
 */
export function decodeTable(bytes: Uint8Array): number[] {
  const table = new QedTable(bytes.subarray(0, bytes.length - (bytes.length % 8)));
  const out = new Array<number>(table.length);
  for (let i = 0; i < out.length; i++) out[i] = table.get(i);
  return out;
}

/**
 * Encodes entries into table bytes.
 *
 * @example
 * ```ts
 * import { encodeTable } from "./table.ts";
 * console.log(encodeTable([1]).length); // 8
 * ```
 */
export function encodeTable(entries: readonly number[]): Uint8Array {
  const table = QedTable.empty(entries.length);
  entries.forEach((v, i) => table.set(i, v));
  return table.bytes;
}

/**
 * qemu's cluster-offset check: cluster aligned, past the header area and
 * below `fileSize` (the in-memory file size: the file length rounded down to
 * a cluster at open, grown by every allocation).
 *
 * @example
 * ```ts
 * import { qedGeometry } from "./header.ts";
 * import { isValidClusterOffset } from "./table.ts";
 * const g = qedGeometry({ clusterSize: 65536, tableSize: 4, headerSize: 1 });
 * console.log(isValidClusterOffset(0x50000, g, 0xa0000), isValidClusterOffset(0x50800, g, 0xa0000)); // true false
 * ```
 */
export function isValidClusterOffset(
  offset: number,
  geometry: QedGeometry,
  fileSize: number,
): boolean {
  return offset % geometry.clusterSize === 0 &&
    offset >= geometry.headerSize * geometry.clusterSize && offset < fileSize;
}

/**
 * qemu's table-offset check: the first and last cluster of the table are
 * valid cluster offsets. qemu also demands `last > first`, which rejects
 * every table when table_size is 1 (§14.1); here table_size 1 is accepted, as
 * the specification allows.
 *
 * @example
 * ```ts
 * import { qedGeometry } from "./header.ts";
 * import { isValidTableOffset } from "./table.ts";
 * const g = qedGeometry({ clusterSize: 65536, tableSize: 4, headerSize: 1 });
 * console.log(isValidTableOffset(0x10000, g, 0x50000)); // true
 * ```
 */
export function isValidTableOffset(
  offset: number,
  geometry: QedGeometry,
  fileSize: number,
): boolean {
  const end = offset + (geometry.tableSize - 1) * geometry.clusterSize;
  if (geometry.tableSize > 1 && !(end > offset)) return false;
  return isValidClusterOffset(offset, geometry, fileSize) &&
    isValidClusterOffset(end, geometry, fileSize);
}
