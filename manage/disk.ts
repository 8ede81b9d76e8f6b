/**
 * Finding a disk as libvirt does: by its target name (a device or node
 * name) or by the path of its image.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import {
  type BlockEntry,
  execute,
  type ImageInfo,
  type NamedBlockNode,
  type QmpConnection,
} from "./connection.ts";
import { ManageError } from "./error.ts";

/** A disk the management API acts on. */
export interface Disk {
  /** The name the caller used (target or path). */
  readonly name: string;
  /** The disk's target as libvirt's messages name it: the device name, else the node name. */
  readonly target: string;
  /** The node-name of the disk's top image: what `block-stream` takes as `device`. */
  readonly nodeName: string;
  /** The image file of the top node. */
  readonly path: string;
  /** The virtual size in bytes. */
  readonly size: number;
  /** The file names of the backing chain below the top, as recorded in it, nearest first. */
  readonly backingChain: readonly string[];
}

// Filter drivers: they show their child's file name but are never the disk
// (a stream job inserts an implicit copy-on-read filter with the top's name).
const FILTER_DRIVERS = new Set([
  "copy-on-read",
  "throttle",
  "preallocate",
  "compress",
  "blklogwrites",
  "blkverify",
  "copy-before-write",
  "snapshot-access",
]);

/** Whether `path` names `file` (the server's name, relative to its own folder, or absolute). */
function samePath(file: string, path: string): boolean {
  return file === path || resolve(file) === resolve(path);
}

function chainOf(image: ImageInfo): string[] {
  const out: string[] = [];
  for (let i = image["backing-image"]; i; i = i["backing-image"]) out.push(i.filename);
  return out;
}

/**
 * Resolves `disk` through `query-block` (device or qdev names) and
 * `query-named-block-nodes` (node names, then image paths; for a path, the
 * top-most format node of that file, never a filter or protocol node).
 * Fails with libvirt's text when nothing matches. Relative paths are
 * compared as given and against the caller's folder: the server's own
 * folder is not known over QMP.
 *
 * @example
 * ```ts ignore
 * const disk = await resolveDisk(conn, "/images/ov.qed");
 * console.log(disk.nodeName, disk.size);
 * ```
 */
export async function resolveDisk(conn: QmpConnection, disk: string): Promise<Disk> {
  const nodes = (await execute<NamedBlockNode[]>(conn, "query-named-block-nodes")).filter((n) =>
    !FILTER_DRIVERS.has(n.drv)
  );
  const byName = new Map(nodes.map((n) => [n["node-name"], n]));
  const blocks = await execute<BlockEntry[]>(conn, "query-block");
  const backend = blocks.find((b) => b.device === disk || b.qdev === disk);
  let node = backend?.inserted ? byName.get(backend.inserted["node-name"]) : undefined;
  node ??= byName.get(disk);
  if (!node) {
    const candidates = nodes.filter((n) => n.drv !== "file" && samePath(n.file, disk));
    // The top-most: the one with the longest chain below it.
    candidates.sort((a, b) => b.backing_file_depth - a.backing_file_depth);
    node = candidates[0];
  }
  if (!node) {
    throw new ManageError("VIR_ERR_INVALID_ARG", `disk '${disk}' not found in domain`);
  }
  return {
    name: disk,
    target: backend?.device || node["node-name"],
    nodeName: node["node-name"],
    path: node.file,
    size: node.image["virtual-size"],
    backingChain: chainOf(node.image),
  };
}

/**
 * The name of `base` as recorded in the backing chain of `disk` (what
 * `block-stream` takes as `base`), failing with libvirt's text when the
 * image is not in the chain.
 */
export function findInChain(disk: Disk, base: string): string {
  // A relative backing name is relative to the overlay's folder, as qemu opens it.
  const found = disk.backingChain.find((f) =>
    samePath(f, base) || samePath(resolve(dirname(resolve(disk.path)), f), base)
  );
  if (found === undefined) {
    throw new ManageError(
      "VIR_ERR_INVALID_ARG",
      `could not find image '${base}' in chain for '${disk.path}'`,
    );
  }
  return found;
}
