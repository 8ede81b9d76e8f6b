/**
 * The file adapter of the block layer: opens an image file and its backing
 * chain (through `qed/open_file.ts`) and makes a node for each level.
 *
 * A backing name written in qemu's NBD URI syntax (`nbd://HOST:PORT/EXPORT`,
 * `nbd+unix:///EXPORT?socket=PATH`, as `qemu-img create -b` stores it) is
 * opened as an `nbd` node ({@linkcode openNbdNode}) at the bottom of the
 * chain. A chain without such a name is opened by `qed/open_file.ts` alone,
 * with all its checks; one with such a name (found by reading the headers
 * first) is opened level by level here, each file level by that module with
 * its backing left closed, and with the same loop and depth limits.
 *
 * @module
 */

import { realpath } from "node:fs/promises";
import type { NbdClientOptions } from "../nbd/client.ts";
import { isNbdUri, parseNbdUri } from "../nbd/uri.ts";
import { FileStorage } from "../io/file_storage.ts";
import { readFull } from "../io/storage.ts";
import { BackingChainError } from "../qed/error.ts";
import {
  decodeHeader,
  QED_F_BACKING_FILE,
  QED_F_BACKING_FORMAT_NO_PROBE,
  QED_HEADER_BYTES,
  QED_MAGIC,
  QED_MAX_BACKING_NAME,
} from "../qed/header.ts";
import { QedImage } from "../qed/image.ts";
import {
  type ImageFormat,
  MAX_BACKING_CHAIN_DEPTH,
  type OpenedImage,
  openImageFile,
  type OpenImageFileOptions,
  resolveBackingPath,
} from "../qed/open_file.ts";
import type { BlockGraph } from "./graph.ts";
import { openNbdNode } from "./nbd_node.ts";
import type { BlockNode } from "./node.ts";
import { qedNode } from "./qed_node.ts";
import { rawNode } from "./raw_node.ts";

/** An opened chain of nodes. */
export interface OpenedChain {
  /** The top node. */
  top: BlockNode;
  /** Every node, top first. */
  nodes: BlockNode[];
  /** Closes every image of the chain (and removes the nodes from the graph, if one was given). */
  close(): Promise<void>;
}

/** Options of {@linkcode openNodeChain}. */
export interface OpenNodeChainOptions extends OpenImageFileOptions {
  /** The top node's name. Default: an automatic name (or `"top"` without a graph). */
  nodeName?: string;
  /** Registers the nodes here, naming the backing levels automatically as qemu does. */
  graph?: BlockGraph;
  /**
   * Settings of the client of an NBD backing (timeouts, `reconnectDelay` —
   * qemu's `reconnect-delay` in ms —, the clock). Default: the client's.
   */
  nbd?: Omit<NbdClientOptions, "address" | "connect" | "exportName" | "readOnly">;
}

/** One level of a chain opened here: a file image, or the NBD node at the bottom. */
type Level = { opened: OpenedImage } | { nbd: BlockNode };

/**
 * Opens `path` and its backing chain as nodes (backing levels read-only).
 *
 * @example
 * ```ts ignore
 * const chain = await openNodeChain("ov.qed");
 * const job = startStream(jobs, chain.top, { jobId: "s0" });
 * await job.concluded;
 * await chain.close();
 * ```
 */
export async function openNodeChain(
  path: string,
  options: OpenNodeChainOptions = {},
): Promise<OpenedChain> {
  const graph = options.graph;
  const nbd = (options.backing ?? true) && await hasNbdBacking(path, options.format);
  if (nbd && options.backingRoot !== undefined) {
    // An untrusted image must not make us dial a server of its choosing.
    throw new BackingChainError(
      "QED_BACKING_OUTSIDE_ROOT",
      `Could not open backing file of '${path}': its chain names an NBD export, ` +
        `outside the allowed folder '${options.backingRoot}'`,
    );
  }
  const levels = nbd ? await openLevels(path, options) : await openFileChain(path, options);
  const nodes: BlockNode[] = [];
  let below: BlockNode | null = null;
  for (let i = levels.length - 1; i >= 0; i--) {
    const level = levels[i]!;
    const nodeName = i === 0 && options.nodeName !== undefined
      ? options.nodeName
      : graph?.autoName() ?? (i === 0 ? "top" : `backing${i}`);
    let node: BlockNode;
    if ("nbd" in level) node = level.nbd;
    else if (level.opened.image instanceof QedImage) {
      node = qedNode(level.opened.image, { nodeName, filename: level.opened.path, backing: below });
    } else node = rawNode(level.opened.image, { nodeName, filename: level.opened.path });
    nodes.unshift(node);
    below = node;
  }
  for (const node of nodes) graph?.addNode(node);
  return {
    top: nodes[0]!,
    nodes,
    async close() {
      for (const node of nodes) graph?.removeNode(node);
      await closeLevels(levels);
    },
  };
}

async function openFileChain(path: string, options: OpenNodeChainOptions): Promise<Level[]> {
  const levels: Level[] = [];
  for (let o: OpenedImage | null = await openImageFile(path, options); o; o = o.backing) {
    levels.push({ opened: o });
  }
  return levels; // The top's close() closes the whole chain.
}

async function closeLevels(levels: Level[]): Promise<void> {
  const first = levels[0];
  let error: unknown;
  if (first && "opened" in first) await first.opened.close().catch((e) => error ??= e);
  for (const level of levels) {
    if ("nbd" in level) await level.nbd.close().catch((e) => error ??= e);
  }
  if (error !== undefined) throw error;
}

/**
 * The backing name stored in a QED file's header, read from the header
 * alone (no image is opened, nothing is repaired); `undefined` for a raw
 * file, a file without a backing name, or one that is not a valid header.
 */
async function peekBacking(
  path: string,
  format: ImageFormat | undefined,
): Promise<{ name: string; format: ImageFormat | undefined } | undefined> {
  if (format === "raw") return undefined;
  const storage = await FileStorage.open(path, { readOnly: true });
  try {
    const head = new Uint8Array(QED_HEADER_BYTES);
    await readFull(storage, 0, head);
    const h = decodeHeader(head);
    if (h.magic !== QED_MAGIC || !(h.features & QED_F_BACKING_FILE)) return undefined;
    if (h.backingFilenameSize === 0 || h.backingFilenameSize >= QED_MAX_BACKING_NAME) {
      return undefined;
    }
    const name = new Uint8Array(h.backingFilenameSize);
    await readFull(storage, h.backingFilenameOffset, name);
    return {
      name: new TextDecoder().decode(name),
      format: h.features & QED_F_BACKING_FORMAT_NO_PROBE ? "raw" : undefined,
    };
  } finally {
    await storage.close();
  }
}

/** Whether some level of the chain below `path` names an NBD export. */
async function hasNbdBacking(path: string, format: ImageFormat | undefined): Promise<boolean> {
  let at = path;
  let fmt = format;
  for (let depth = 0; depth < MAX_BACKING_CHAIN_DEPTH; depth++) {
    let backing;
    try {
      backing = await peekBacking(at, fmt);
    } catch {
      return false; // Let qed/open_file.ts report it, in its words.
    }
    if (backing === undefined) return false;
    if (isNbdUri(backing.name)) return true;
    at = resolveBackingPath(at, backing.name);
    fmt = backing.format;
  }
  return false;
}

/**
 * Opens a chain that ends in an NBD export level by level: each file with
 * its backing left closed, the next level attached to it.
 */
async function openLevels(path: string, options: OpenNodeChainOptions): Promise<Level[]> {
  const levels: Level[] = [];
  const seen: string[] = [];
  try {
    let at = path;
    let format = options.format;
    for (let depth = 0;; depth++) {
      const top = depth === 0;
      const opened = await openImageFile(at, {
        readOnly: top ? options.readOnly ?? false : true,
        backing: false,
        ...(format ? { format } : {}),
      });
      levels.push({ opened });
      const image = opened.image;
      if (!(image instanceof QedImage) || image.backingFile === undefined) break;
      seen.push(await realpath(at));
      const name = image.backingFile;
      if (isNbdUri(name)) {
        levels.push({ nbd: await openBackingNbd(name, options) });
        break;
      }
      const next = resolveBackingPath(at, name);
      const real = await realpath(next).catch(() => next);
      if (seen.includes(real)) {
        throw new BackingChainError(
          "QED_BACKING_LOOP",
          `Could not open backing file: '${next}' is already in the backing chain`,
        );
      }
      if (depth + 1 >= MAX_BACKING_CHAIN_DEPTH) {
        throw new BackingChainError(
          "QED_BACKING_TOO_DEEP",
          `Could not open backing file: the backing chain is deeper than ${MAX_BACKING_CHAIN_DEPTH}`,
        );
      }
      at = next;
      format = image.backingFormat;
    }
  } catch (e) {
    for (const level of levels.reverse()) {
      await ("nbd" in level ? level.nbd.close() : level.opened.close()).catch(() => {});
    }
    throw e;
  }
  // Each file level here closes only itself; closeLevels closes the first: make it close all.
  const files = levels.flatMap((l) => "opened" in l ? [l.opened] : []);
  const first = files[0]!;
  levels[0] = {
    opened: {
      ...first,
      async close() {
        for (const f of files) await f.close();
      },
    },
  };
  return levels;
}

async function openBackingNbd(name: string, options: OpenNodeChainOptions): Promise<BlockNode> {
  try {
    return await openNbdNode(parseNbdUri(name), {
      nodeName: options.graph?.autoName() ?? "nbd",
      filename: name,
      readOnly: true,
      ...(options.nbd ? { client: options.nbd } : {}),
    });
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new BackingChainError("QED_BACKING_OPEN", `Could not open backing file: ${detail}`, {
      cause,
    });
  }
}
