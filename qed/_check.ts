/**
 * The QED consistency check (§11.1 of the reference), over an open image's
 * tables: every L1 and L2 offset valid, every cluster referenced once,
 * unreferenced clusters counted as leaks; with repair, invalid entries are
 * zeroed and their whole table rewritten. Duplicates and leaks are never
 * repaired. Cluster counts are exact (qemu's rounding bug, §14.3, is not
 * reproduced, so no spurious leaks are reported).
 *
 * @module
 */

import { readFull, type Storage } from "../io/storage.ts";
import type { QedGeometry } from "./header.ts";
import {
  isValidClusterOffset,
  isValidTableOffset,
  QED_UNALLOCATED,
  QED_ZERO_CLUSTER,
  QedTable,
} from "./table.ts";

/** Options of {@linkcode QedImage.check}. */
export interface QedCheckOptions {
  /**
   * Repair mode. As in qemu 7.2, either mode zeroes invalid L1/L2 entries
   * (qemu's QED check repairs whenever any fix flag is given); leaks are
   * never repaired. Default: no repair.
   */
  repair?: "leaks" | "all";
}

/** What a consistency check found: the numbers `qemu-img check` prints. */
export interface QedCheckResult {
  /** `ceil(image_size / cluster_size)`. */
  totalClusters: number;
  /** L2 entries other than 0 and 1, invalid ones included. */
  allocatedClusters: number;
  /** Allocated entries not exactly one cluster after the previous one of the same table. */
  fragmentedClusters: number;
  /** Always 0: QED has no compression. */
  compressedClusters: number;
  /** Corruptions left: invalid offsets not repaired, clusters referenced twice. */
  corruptions: number;
  /** Clusters of the file that nothing references. */
  leaks: number;
  /** I/O errors met while checking. */
  checkErrors: number;
  /** Invalid entries zeroed by the repair. */
  corruptionsFixed: number;
  /** Always 0: leaks are never repaired. */
  leaksFixed: number;
}

/** What the check needs of an open image. */
export interface CheckTarget {
  /** The image file. */
  storage: Storage;
  /** The image geometry. */
  geometry: QedGeometry;
  /** Guest size in bytes. */
  imageSize: number;
  /** File offset of the L1 table. */
  l1TableOffset: number;
  /** The in-memory L1 table (repaired in place). */
  l1: QedTable;
  /** The in-memory file size. */
  fileSize: number;
  /** Drops a cached copy of an L2 table that the repair rewrites. */
  forgetTable(offset: number): void;
}

/**
 * Checks (and with `repair`, fixes) the L1 and L2 tables of an image; the
 * caller holds off every other metadata update meanwhile.
 */
export async function checkTables(target: CheckTarget, repair: boolean): Promise<QedCheckResult> {
  const g = target.geometry;
  const cs = g.clusterSize;
  const result: QedCheckResult = {
    totalClusters: Math.ceil(target.imageSize / cs),
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
    corruptions: 0,
    leaks: 0,
    checkErrors: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
  };
  const nclusters = target.fileSize / cs;
  const used = new Uint8Array(nclusters);
  /** Marks clusters used; each one already used is a corruption. */
  const markUsed = (offset: number, n: number): boolean => {
    let clashes = 0;
    for (let c = offset / cs, i = 0; i < n; i++, c++) {
      if (used[c]) clashes++;
      used[c] = 1;
    }
    result.corruptions += clashes;
    return clashes === 0;
  };
  const fix = (table: QedTable, index: number): void => {
    if (repair) {
      table.set(index, QED_UNALLOCATED);
      result.corruptionsFixed++;
    } else {
      result.corruptions++;
    }
  };
  markUsed(target.l1TableOffset, g.tableSize);
  let l1Invalid = 0;
  for (let i = 0; i < g.tableNelems; i++) {
    const l2Offset = target.l1.get(i);
    if (l2Offset === QED_UNALLOCATED) continue;
    if (!isValidTableOffset(l2Offset, g, target.fileSize)) {
      fix(target.l1, i);
      l1Invalid++;
      continue;
    }
    if (!markUsed(l2Offset, g.tableSize)) continue;
    const table = QedTable.empty(g.tableNelems);
    try {
      await readFull(target.storage, l2Offset, table.bytes);
    } catch {
      result.checkErrors++;
      continue;
    }
    let invalid = 0;
    let last = 0;
    for (let j = 0; j < g.tableNelems; j++) {
      const entry = table.get(j);
      if (entry === QED_UNALLOCATED || entry === QED_ZERO_CLUSTER) continue;
      result.allocatedClusters++;
      if (last !== 0 && last + cs !== entry) result.fragmentedClusters++;
      last = entry;
      if (!isValidClusterOffset(entry, g, target.fileSize)) {
        fix(table, j);
        invalid++;
        continue;
      }
      markUsed(entry, 1);
    }
    if (invalid > 0 && repair) {
      target.forgetTable(l2Offset);
      try {
        await target.storage.write(l2Offset, table.bytes);
      } catch {
        result.checkErrors++;
      }
    }
  }
  if (l1Invalid > 0 && repair) {
    try {
      await target.storage.write(target.l1TableOffset, target.l1.bytes);
    } catch {
      result.checkErrors++;
    }
  }
  if (result.checkErrors === 0) {
    for (let c = g.headerSize; c < nclusters; c++) if (!used[c]) result.leaks++;
  }
  return result;
}
