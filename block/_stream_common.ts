/**
 * What the stream job and single-chunk streaming share: planning one piece
 * and the completion's backing rewrite.
 *
 * @module
 */

import type { BlockDevice } from "./device.ts";
import { BlockError } from "./error.ts";
import type { BlockNode } from "./node.ts";

/** One planned piece: `length` bytes at the asked offset, copied or skipped. */
export interface PlannedPiece {
  /** Bytes covered, at least 1. */
  length: number;
  /** Whether they must be copied into the top. */
  copy: boolean;
}

/**
 * qemu's per-iteration decision: a run allocated in the top is skipped; else
 * it is copied iff allocated from the top's backing down to `baseOverlay`;
 * past the end of the backing the rest of the device is one skipped piece.
 */
export async function planPiece(
  device: BlockDevice,
  baseOverlay: BlockNode,
  offset: number,
  chunkSize: number,
): Promise<PlannedPiece> {
  const top = device.top;
  const len = top.size;
  const st = await top.blockStatus(offset, Math.min(chunkSize, len - offset));
  const n = Math.max(1, Math.min(st.length, len - offset));
  if (st.kind !== "unallocated") return { length: n, copy: false };
  const above = await device.allocatedAbove(top.backing, baseOverlay, offset, n);
  if (above.length === 0) return { length: len - offset, copy: false };
  return { length: Math.min(n, above.length), copy: above.allocated };
}

/**
 * The completion's graph and header change (qemu's `stream_prepare`): the
 * top's backing becomes `baseNow()`, recorded as `backingFile` (default: the
 * base's filename) with the base's driver as format, or removed. `baseNow` is
 * asked after the flush, so a commit below that completed meanwhile counts.
 */
export async function rewriteBacking(
  top: BlockNode,
  baseNow: () => BlockNode | null,
  backingFile: string | undefined,
): Promise<void> {
  if (!top.backing) return;
  if (!top.setBacking) {
    throw new BlockError("EPERM", `Node '${top.nodeName}' cannot change its backing file`);
  }
  // Every copied cluster's L2 entry must be durable before the header stops
  // naming the backing file: otherwise a power cut on a disk that reorders
  // unflushed writes can keep the new header but lose the last entries, and
  // those clusters would read zeros instead of the template's data (found by
  // tests/reliability/power_cut_test.ts).
  await top.flush();
  const base = baseNow();
  await top.setBacking(
    base,
    base
      ? { backingFile: backingFile ?? base.filename, backingFormat: base.driver }
      : { backingFile: null },
  );
}

/** The node directly above `base` in `top`'s chain (`top` itself if its backing is `base`). */
export function overlayOf(top: BlockNode, base: BlockNode | null): BlockNode {
  let overlay = top;
  while (overlay.backing && overlay.backing !== base) overlay = overlay.backing;
  return overlay;
}
