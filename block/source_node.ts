/**
 * A read-only node over anything that answers positional reads: a remote
 * template, a simulator's image, a latency- or fault-injecting wrapper.
 *
 * @module
 */

import { BlockError } from "./error.ts";
import type { BlockNode, BlockStatus } from "./node.ts";

/** What a {@linkcode sourceNode} reads from. */
export interface ReadSource {
  /** Size in bytes. */
  readonly size: number;
  /** Fills `buf` with the bytes at `offset` (the range lies inside `size`). */
  read(offset: number, buf: Uint8Array): Promise<void>;
  /** Optional allocation answer; default: everything is data. */
  blockStatus?(offset: number, length: number): Promise<BlockStatus>;
  /** Optional release. */
  close?(): Promise<void>;
}

/** Options of {@linkcode sourceNode}. */
export interface SourceNodeOptions {
  /** The node name. */
  nodeName: string;
  /** The driver name to show. Default `"sim-remote"`. */
  driver?: string;
  /** The filename (a URI or a description) to show. Default `""`. */
  filename?: string;
}

/**
 * A read-only node over a {@linkcode ReadSource}.
 *
 * @example
 * ```ts
 * import { sourceNode } from "./source_node.ts";
 * const bytes = new Uint8Array(65536).fill(7);
 * const node = sourceNode({
 *   size: bytes.length,
 *   read: (offset, buf) => Promise.resolve(buf.set(bytes.subarray(offset, offset + buf.length))),
 * }, { nodeName: "template" });
 * const buf = new Uint8Array(4);
 * await node.read(0, buf);
 * console.log(buf); // Uint8Array(4) [ 7, 7, 7, 7 ]
 * ```
 */
export function sourceNode(source: ReadSource, options: SourceNodeOptions): BlockNode {
  const readOnly = (): Promise<never> =>
    Promise.reject(new BlockError("READ_ONLY", `Node '${options.nodeName}' is read only`));
  return {
    nodeName: options.nodeName,
    driver: options.driver ?? "sim-remote",
    filename: options.filename ?? "",
    get size() {
      return source.size;
    },
    readOnly: true,
    backing: null,
    read: (offset, buf) => source.read(offset, buf),
    write: readOnly,
    writeZeroes: readOnly,
    flush: () => Promise.resolve(),
    blockStatus(offset, length): Promise<BlockStatus> {
      if (source.blockStatus) return source.blockStatus(offset, length);
      return Promise.resolve({
        kind: "data",
        length: Math.max(0, Math.min(length, source.size - offset)),
      });
    },
    close: () => source.close?.() ?? Promise.resolve(),
  };
}
