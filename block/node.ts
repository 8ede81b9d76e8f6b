/**
 * One node of the block graph: qemu's `BlockDriverState`.
 *
 * A node is an image (QED, raw), a protocol (a file, a remote template) or
 * anything else that answers positional reads. Format nodes chain through
 * {@linkcode BlockNode.backing}: what a node does not allocate is read from
 * the node below. Every node has a `nodeName`, as in qemu, so that the
 * monitor can address it.
 *
 * @module
 */

/** The status of a run of bytes in one node alone ("unallocated" = falls through to the backing). */
export type BlockStatusKind = "data" | "zero" | "unallocated";

/** The run starting at an asked offset that has one {@linkcode BlockStatusKind} in a node. */
export interface BlockStatus {
  /** What the node holds for the run. */
  kind: BlockStatusKind;
  /** Length of the run in bytes, at least 1 and at most the asked length. */
  length: number;
}

/** What to write into a node's header when its backing link changes. */
export interface BackingChange {
  /** The backing file name to record; `null` removes the link. */
  backingFile: string | null;
  /** The backing format to record (`"raw"` sets QED's no-probe bit); ignored without a name. */
  backingFormat?: string;
}

/** One node of the block graph (qemu's `BlockDriverState`). */
export interface BlockNode {
  /** qemu's node-name (auto names look like `#block123`). */
  readonly nodeName: string;
  /** The driver: `"qed"`, `"raw"`, `"file"`, `"sim-remote"`, ... */
  readonly driver: string;
  /** The filename as `query-named-block-nodes` shows it (a path, a URI or a description). */
  readonly filename: string;
  /** Virtual size in bytes. */
  readonly size: number;
  /** Whether writes are refused. */
  readonly readOnly: boolean;
  /** The next node down the chain, or `null`. */
  readonly backing: BlockNode | null;
  /**
   * The allocation unit for copy-on-read widening (qemu's `cluster_size`);
   * absent for nodes without clusters (no widening).
   */
  readonly clusterSize?: number;
  /**
   * For a filter node a job inserts (copy-on-read, commit_top, mirror_top):
   * the node it filters. Arguments naming a filter stand for this node, as
   * qemu skips filters when it looks for a chain's images.
   */
  readonly filtered?: BlockNode;
  /** Reads through this node: its data, its zeros, or the backing's bytes (zeros past the backing's end). */
  read(offset: number, buf: Uint8Array): Promise<void>;
  /** Writes `data` at `offset` into this node. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes the range read as zeros, as zero clusters where the format can. */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
  /** The status of this node alone for the run starting at `offset` (length at most `length`). */
  blockStatus(offset: number, length: number): Promise<BlockStatus>;
  /**
   * Changes the backing link: first the graph (reads now fall through to
   * `backing`), then the image header as qemu's change-backing-file does.
   * Absent on nodes that cannot have a backing file.
   */
  setBacking?(backing: BlockNode | null, change: BackingChange): Promise<void>;
  /** Releases the node (not its backing). */
  close(): Promise<void>;
}

/**
 * The nodes of the chain starting at `node` (itself first), down to the
 * bottom.
 *
 * @example
 * ```ts ignore
 * for (const n of chainOf(top)) console.log(n.nodeName);
 * ```
 */
export function* chainOf(node: BlockNode | null): Generator<BlockNode> {
  for (let n = node, i = 0; n && i < 1024; n = n.backing, i++) yield n;
}

/** The members of a node that {@linkcode forwardingNode} lets a caller replace. */
export interface NodeOverrides {
  /** The node name. Default: the forwarded node's, live. */
  nodeName?: string;
  /** The driver. Default: the forwarded node's. */
  driver?: string;
  /** The filename shown. Default: the forwarded node's, live. */
  filename?: string;
  /** Whether writes are refused (the caller's `write` enforces it). Default: the forwarded node's. */
  readOnly?: boolean;
  /** The backing link shown (`null`: none, as a job's filter shows). Default: the forwarded node's, live. */
  backing?: BlockNode | null;
  /** Makes the node a filter of this one ({@linkcode BlockNode.filtered}). Default: not a filter. */
  filtered?: BlockNode;
  /** Replaces {@linkcode BlockNode.read}. */
  read?: BlockNode["read"];
  /** Replaces {@linkcode BlockNode.write}. */
  write?: BlockNode["write"];
  /** Replaces {@linkcode BlockNode.writeZeroes}. */
  writeZeroes?: BlockNode["writeZeroes"];
  /** Replaces {@linkcode BlockNode.flush}. */
  flush?: BlockNode["flush"];
  /** Replaces {@linkcode BlockNode.blockStatus}. */
  blockStatus?: BlockNode["blockStatus"];
  /** Replaces {@linkcode BlockNode.close}. */
  close?: BlockNode["close"];
  /** Replaces {@linkcode BlockNode.setBacking}; `false`: the forwarding node has none. */
  setBacking?: BlockNode["setBacking"] | false;
}

/**
 * A node that forwards every member to `node`, except those `overrides`
 * replaces. Size, filename, backing and the rest are read from `node` when
 * asked, so a later change of `node` (a new backing link) shows. Explicit
 * forwarding rather than a prototype link: `node` may be a class with
 * private fields, whose methods must run on it.
 *
 * @example
 * ```ts ignore
 * // Counts the reads of `node` under another name.
 * let reads = 0;
 * const counted = forwardingNode(node, {
 *   nodeName: "counted",
 *   read: (offset, buf) => (reads++, node.read(offset, buf)),
 * });
 * ```
 */
export function forwardingNode(node: BlockNode, overrides: NodeOverrides = {}): BlockNode {
  const o = overrides;
  const setBacking = o.setBacking === false ? undefined : o.setBacking ?? (node.setBacking &&
    ((backing: BlockNode | null, change: BackingChange) => node.setBacking!(backing, change)));
  return {
    get nodeName() {
      return o.nodeName ?? node.nodeName;
    },
    get driver() {
      return o.driver ?? node.driver;
    },
    get filename() {
      return o.filename ?? node.filename;
    },
    get size() {
      return node.size;
    },
    get readOnly() {
      return o.readOnly ?? node.readOnly;
    },
    get backing() {
      return o.backing !== undefined ? o.backing : node.backing;
    },
    ...(o.filtered ? { filtered: o.filtered } : {}),
    ...(node.clusterSize !== undefined ? { clusterSize: node.clusterSize } : {}),
    read: o.read ?? ((offset, buf) => node.read(offset, buf)),
    write: o.write ?? ((offset, data) => node.write(offset, data)),
    writeZeroes: o.writeZeroes ?? ((offset, length) => node.writeZeroes(offset, length)),
    flush: o.flush ?? (() => node.flush()),
    blockStatus: o.blockStatus ?? ((offset, length) => node.blockStatus(offset, length)),
    ...(setBacking ? { setBacking } : {}),
    close: o.close ?? (() => node.close()),
  };
}
