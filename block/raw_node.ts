/**
 * The raw format driver as a {@linkcode BlockNode}.
 *
 * @module
 */

import type { RawImage } from "../qed/raw_image.ts";
import type { BlockNode, BlockStatus } from "./node.ts";

/** Options of {@linkcode rawNode}. */
export interface RawNodeOptions {
  /** The node name. */
  nodeName: string;
  /** The filename to show. Default: the storage's path, or `""`. */
  filename?: string;
  /** The driver name to show: `"raw"` (default), or `"file"` for a protocol node. */
  driver?: "raw" | "file";
}

/**
 * Wraps an open {@linkcode RawImage} as a node (driver `raw`). Every byte
 * reports as data, as qemu's raw driver over a file does for allocation.
 *
 * @example
 * ```ts ignore
 * const base = rawNode(await RawImage.open(storage, { readOnly: true }), { nodeName: "base" });
 * ```
 */
export function rawNode(image: RawImage, options: RawNodeOptions): BlockNode & { image: RawImage } {
  const path = (image.storage as { path?: unknown }).path;
  return {
    nodeName: options.nodeName,
    driver: options.driver ?? "raw",
    filename: options.filename ?? (typeof path === "string" ? path : ""),
    image,
    get size() {
      return image.size;
    },
    get readOnly() {
      return image.readOnly;
    },
    backing: null,
    read: (offset, buf) => image.read(offset, buf),
    write: (offset, data) => image.write(offset, data),
    writeZeroes: (offset, length) => image.writeZeroes(offset, length),
    flush: () => image.flush(),
    blockStatus(offset, length): Promise<BlockStatus> {
      return Promise.resolve({
        kind: "data",
        length: Math.max(0, Math.min(length, image.size - offset)),
      });
    },
    close: () => image.close(),
  };
}
