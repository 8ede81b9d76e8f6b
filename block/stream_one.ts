/**
 * Single-chunk streaming: the seed's "single sector" mode, in which a
 * management tool streams one piece at a time and paces the work itself.
 *
 * {@linkcode streamOne} streams the piece at an offset exactly as one
 * iteration of the stream job does (skip if allocated in the top or not
 * allocated above the base; otherwise a serialising copy-on-read copy,
 * coherent with guest I/O) and returns the offset to continue from. When the
 * end is reached and nothing is left to copy, it completes the stream like the
 * job does: the top's backing becomes the base (or is removed) and the header
 * is rewritten.
 *
 * @module
 */

import { BlockDevice } from "./device.ts";
import { BlockError } from "./error.ts";
import { checkNotBusy } from "./graph.ts";
import type { BlockNode } from "./node.ts";
import { overlayOf, planPiece, rewriteBacking } from "./_stream_common.ts";
import { STREAM_CHUNK } from "./stream_job.ts";

/** Options of {@linkcode streamOne}. */
export interface StreamOneOptions {
  /** Keep this node and below as the backing (a partial stream). Default `null`: stream the whole chain. */
  base?: BlockNode | null;
  /** The backing file name to record on completion (only with a base). Default: the base's filename. */
  backingFile?: string;
  /** The largest piece in bytes. Default {@linkcode STREAM_CHUNK}. */
  chunkSize?: number;
  /** Complete the stream (rewrite the backing link) once the end is reached and nothing is left. Default true. */
  finish?: boolean;
}

/** What {@linkcode streamOne} did. */
export interface StreamOneResult {
  /** Where the piece started. */
  offset: number;
  /** Bytes the piece covered (0 at the end). */
  length: number;
  /** Whether the piece was copied (false: skipped). */
  copied: boolean;
  /** The offset to continue from; the device size at the end. */
  next: number;
  /** Whether `next` is the end of the device. */
  done: boolean;
  /** Whether the stream was completed: nothing left to copy, backing link rewritten. */
  completed: boolean;
}

/**
 * Streams the piece at `offset` and returns where to continue.
 *
 * @example Stream a whole device one piece at a time
 * ```ts ignore
 * let at = 0;
 * for (;;) {
 *   const r = await streamOne(device, at);
 *   if (r.done) break;
 *   at = r.next;
 * }
 * ```
 */
export async function streamOne(
  target: BlockDevice | BlockNode,
  offset: number,
  options: StreamOneOptions = {},
): Promise<StreamOneResult> {
  const device = target instanceof BlockDevice ? target : new BlockDevice(target);
  const top = device.top;
  const size = top.size;
  const base = options.base ?? null;
  const chunkSize = options.chunkSize ?? STREAM_CHUNK;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > size) {
    throw new BlockError("OUT_OF_RANGE", `Offset ${offset} is outside the device's ${size} bytes`);
  }
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
    throw new BlockError("BAD_ARGUMENT", `Chunk size ${chunkSize} is not positive`);
  }
  if (base && (base === top || ![...chainNodes(top)].includes(base))) {
    throw new BlockError(
      "BASE_NOT_IN_CHAIN",
      `Node '${base.nodeName}' is not a backing image of '${top.nodeName}'`,
    );
  }
  const overlay = overlayOf(top, base);
  let length = 0;
  let copied = false;
  if (offset < size && overlay !== top) {
    const piece = await planPiece(device, overlay, offset, chunkSize);
    length = piece.length;
    if (piece.copy) {
      await device.populate(offset, length, { bottom: overlay });
      copied = true;
    }
  } else {
    length = size - offset;
  }
  const next = offset + length;
  const done = next >= size;
  let completed = false;
  if (done && (options.finish ?? true)) {
    completed = await complete(device, overlay, base, options.backingFile, chunkSize);
  }
  return { offset, length, copied, next, done, completed };
}

function* chainNodes(top: BlockNode): Generator<BlockNode> {
  for (let n = top.backing; n; n = n.backing) yield n;
}

async function complete(
  device: BlockDevice,
  overlay: BlockNode,
  base: BlockNode | null,
  backingFile: string | undefined,
  chunkSize: number,
): Promise<boolean> {
  const top = device.top;
  for (let n: BlockNode | null = top; n && n !== base; n = n.backing) checkNotBusy(n);
  if (overlay !== top) {
    for (let at = 0; at < top.size;) {
      const piece = await planPiece(device, overlay, at, chunkSize);
      if (piece.copy) return false;
      at += piece.length;
    }
  }
  await rewriteBacking(top, () => base, backingFile);
  return true;
}
