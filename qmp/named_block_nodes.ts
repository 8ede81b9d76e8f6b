/**
 * `query-named-block-nodes` (and the `inserted` member of `query-block`):
 * qemu 7.2's `BlockDeviceInfo` for the nodes of a {@linkcode BlockGraph}.
 *
 * A node does not know how it was opened, but qemu's answer depends on it:
 * the `file` child a format or filter node reads through, the driver options
 * it was given, and whether it was opened implicitly (a backing file named in
 * an image header). Whoever builds nodes records that with
 * {@linkcode recordNodeOrigin}; without a record, a format node's file child
 * is the `file` node with the same filename.
 *
 * Filenames follow qemu's `bdrv_refresh_filename`: a node whose options can
 * be rebuilt from a plain filename shows that filename, any other one a
 * `json:{…}` pseudo-filename made of its full options (a `blkdebug` node, a
 * `copy-on-read` filter, a format node over either, a node whose backing
 * is not the one its header names, or a `quorum`, whose `children` list the
 * full options of each child).
 *
 * Members are built in the QAPI schema's order (`BlockDeviceInfo`,
 * `ImageInfo`, `BlockdevCacheInfo`), so the writer's `QDict` order matches
 * qemu's byte for byte.
 *
 * @module
 */

import type { BlockGraph } from "../block/graph.ts";
import type { JobRegistry } from "../block/job_registry.ts";
import type { BlockNode } from "../block/node.ts";
import { StreamJob } from "../block/stream_job.ts";
import { resolveBackingPath } from "../qed/open_file.ts";
import { toQemuJson } from "./json_writer.ts";
import { qdictKeys } from "./qdict_order.ts";

/** How a node was opened, as qemu's answers need it. */
export interface NodeOrigin {
  /** The child a format or filter node reads through (qemu's `file`, blkdebug's `image`). */
  file?: BlockNode;
  /** The option naming that child. Default `"file"`. */
  fileKey?: string;
  /** Driver options besides `driver`, `node-name` and the children, typed, as a `json:` filename shows them. */
  options?: Record<string, unknown>;
  /** Opened implicitly (a backing file from a header, or its file node): listed only while something uses it. */
  implicit?: boolean;
  /** Defined inline in another node's options (`file.driver=…`, `children.0.driver=…`): not the monitor's to delete. */
  inline?: boolean;
  /** The children of a node with a list of them (a quorum), in order. */
  children?: BlockNode[];
}

const origins = new WeakMap<BlockNode, NodeOrigin>();

/**
 * Records how `node` was opened, for `query-named-block-nodes`.
 *
 * @example
 * ```ts ignore
 * recordNodeOrigin(qedTop, { file: fileNode });
 * recordNodeOrigin(debugNode, { file: fileNode, fileKey: "image", options: { "inject-error.0.event": "read_aio" } });
 * ```
 */
export function recordNodeOrigin(node: BlockNode, origin: NodeOrigin): void {
  origins.set(node, origin);
}

/** What {@linkcode recordNodeOrigin} recorded for `node`, if anything. */
export function nodeOrigin(node: BlockNode): NodeOrigin | undefined {
  return origins.get(node);
}

/** Size and allocated bytes of a host file (`st_size`, `st_blocks * 512`). */
export interface HostFileStat {
  /** Length in bytes. */
  size: number;
  /** Bytes allocated on disk. */
  allocated: number;
}

/** Options of {@linkcode queryNamedBlockNodes}. */
export interface NamedBlockNodesOptions {
  /** Leave out `backing-image` (and report `backing_file_depth` 0), as qemu's `flat`. Default false. */
  flat?: boolean;
  /** The jobs, to find the node a stream job's filter sits on. */
  jobs?: JobRegistry;
  /** Stats a host file. Default: `Deno.stat`; `undefined` when it cannot be stat'ed. */
  stat?: (path: string) => Promise<HostFileStat | undefined>;
}

/** Stats a host file with Deno (the one system call of this module). */
export async function denoStat(path: string): Promise<HostFileStat | undefined> {
  try {
    const st = await Deno.stat(path);
    const blocks = st.blocks ?? Math.ceil(st.size / 512);
    return { size: st.size, allocated: blocks * 512 };
  } catch {
    return undefined;
  }
}

/** Drivers that are filters: their `image` shows the filtered child as `backing-image`. */
const FILTER_DRIVERS = new Set(["blkdebug", "copy-on-read"]);
/** Drivers whose options always make a `json:` filename (qemu cannot express them in a plain name). */
const JSON_ONLY_DRIVERS = new Set(["blkdebug", "copy-on-read", "quorum"]);

/** Adds the driver options `node` was given to its full `options`. */
function givenOptions(node: BlockNode, options: Record<string, unknown>): Record<string, unknown> {
  // qemu copies the options it was given in its QDict order, so same-bucket keys swap.
  const given = origins.get(node)?.options ?? {};
  for (const key of qdictKeys(given)) options[key] = given[key];
  return options;
}

/** Resolves the relations qemu's answers need, once per query. */
class NodeView {
  readonly #graph: BlockGraph;
  readonly #jobs: JobRegistry | undefined;
  readonly #filenames = new Map<BlockNode, string>();

  constructor(graph: BlockGraph, jobs: JobRegistry | undefined) {
    this.#graph = graph;
    this.#jobs = jobs;
  }

  /** The child `node` reads through, with its option name. */
  child(node: BlockNode): { key: string; node: BlockNode } | undefined {
    const origin = origins.get(node);
    if (origin?.file) return { key: origin.fileKey ?? "file", node: origin.file };
    if (node.driver === "copy-on-read") {
      for (const job of this.#jobs?.list() ?? []) {
        if (job instanceof StreamJob && job.filterNode === node) {
          return { key: "file", node: job.device.top };
        }
      }
    }
    if (node.driver === "file" || origin) return undefined;
    const file = this.#graph.nodes().find((n) =>
      n.driver === "file" && n !== node && n.filename === node.filename
    );
    return file ? { key: "file", node: file } : undefined;
  }

  /** The backing name recorded in a format node's header, and whether it disables probing. */
  header(node: BlockNode): { name: string; raw: boolean } | undefined {
    const image = (node as { image?: { backingFile?: string; backingFormat?: string } }).image;
    if (node.driver !== "qed" || !image?.backingFile) return undefined;
    return { name: image.backingFile, raw: image.backingFormat === "raw" };
  }

  /** Whether the backing link differs from the one the header names (qemu's `bdrv_backing_overridden`). */
  backingOverridden(node: BlockNode): boolean {
    const header = this.header(node);
    if (!node.backing) return header !== undefined;
    if (origins.get(node.backing)?.implicit) return false;
    return header?.name !== this.filename(node.backing);
  }

  /** The children of a node with a list of them (a quorum's), or `undefined`. */
  children(node: BlockNode): BlockNode[] | undefined {
    return origins.get(node)?.children;
  }

  /** qemu's full open options of a node (the content of a `json:` filename). */
  fullOptions(node: BlockNode): Record<string, unknown> {
    const children = this.children(node);
    if (children) {
      // qemu's quorum lists every child's full options, gap-less, in order.
      const options: Record<string, unknown> = {
        children: children.map((c) => this.fullOptions(c)),
        driver: node.driver,
      };
      return givenOptions(node, options);
    }
    const child = this.child(node);
    if (!child) return { driver: node.driver, filename: node.filename };
    const options: Record<string, unknown> = {};
    if (node.backing !== null || this.header(node)) {
      if (this.backingOverridden(node)) {
        options.backing = node.backing ? this.fullOptions(node.backing) : null;
      }
    }
    options.driver = node.driver;
    options[child.key] = this.fullOptions(child.node);
    return givenOptions(node, options);
  }

  /** The filename qemu shows for a node. */
  filename(node: BlockNode): string {
    let name = this.#filenames.get(node);
    if (name !== undefined) return name;
    const child = this.child(node);
    if (this.children(node)) {
      name = "json:" + toQemuJson(this.fullOptions(node));
      this.#filenames.set(node, name);
      return name;
    }
    const plain = !child ||
      (!JSON_ONLY_DRIVERS.has(node.driver) &&
        Object.keys(origins.get(node)?.options ?? {}).length === 0 &&
        !this.filename(child.node).startsWith("json:") &&
        !this.backingOverridden(node));
    name = !child
      ? node.filename
      : plain
      ? this.filename(child.node)
      : "json:" + toQemuJson(this.fullOptions(node));
    this.#filenames.set(node, name);
    return name;
  }

  /** The node whose image info is `node`'s `backing-image`, if any. */
  backingImage(node: BlockNode): BlockNode | undefined {
    if (FILTER_DRIVERS.has(node.driver)) return this.child(node)?.node;
    return node.backing ?? undefined;
  }

  /** Whether qemu would list `node`: implicit nodes only while a listed node uses them. */
  listed(): BlockNode[] {
    const nodes = this.#graph.nodes();
    const used = new Set<BlockNode>();
    const visit = (n: BlockNode | null | undefined) => {
      for (let depth = 0; n && !used.has(n) && depth < 1024; depth++) {
        used.add(n);
        const child = this.child(n)?.node;
        if (child) visit(child);
        for (const c of this.children(n) ?? []) visit(c);
        n = n.backing;
      }
    };
    for (const n of nodes) if (!origins.get(n)?.implicit) visit(n);
    return nodes.filter((n) => used.has(n)).reverse();
  }
}

type Stat = (path: string) => Promise<HostFileStat | undefined>;

/** The host file under `node`, through its file children. */
function hostFile(view: NodeView, node: BlockNode): BlockNode | undefined {
  for (let n: BlockNode | undefined = node, i = 0; n && i < 64; i++) {
    if (n.driver === "file") return n;
    if (n.driver === "blkdebug") return undefined; // qemu: no allocated size through blkdebug
    n = view.child(n)?.node;
  }
  return undefined;
}

/**
 * The bytes a node with a list of children allocates: the sum of its
 * children's (qemu's `bdrv_sum_allocated_file_size`), or `undefined` when
 * one of them cannot tell.
 */
async function childrenAllocated(
  view: NodeView,
  children: BlockNode[],
  stat: Stat,
): Promise<number | undefined> {
  let sum = 0;
  for (const child of children) {
    const nested = view.children(child);
    let bytes: number | undefined;
    if (nested) bytes = await childrenAllocated(view, nested, stat);
    else {
      const file = hostFile(view, child);
      bytes = file ? (await stat(file.filename))?.allocated : undefined;
    }
    if (bytes === undefined) return undefined;
    sum += bytes;
  }
  return sum;
}

async function imageInfo(
  view: NodeView,
  node: BlockNode,
  stat: Stat,
  nested: boolean,
): Promise<{ info: Record<string, unknown>; depth: number }> {
  const file = hostFile(view, node);
  const st = file ? await stat(file.filename) : undefined;
  const children = view.children(node);
  const info: Record<string, unknown> = {
    filename: view.filename(node),
    format: node.driver,
  };
  // qemu has no dirty flag to show for a node without image info of its own (a quorum).
  if (!children) info["dirty-flag"] = false;
  if (st) info["actual-size"] = st.allocated;
  if (children) {
    const allocated = await childrenAllocated(view, children, stat);
    if (allocated !== undefined) info["actual-size"] = allocated;
  }
  info["virtual-size"] = node.driver === "file" && st ? st.size : node.size;
  const clusterNode = node.driver === "copy-on-read" ? view.child(node)?.node : node;
  if (clusterNode?.clusterSize !== undefined && clusterNode.driver === "qed") {
    info["cluster-size"] = clusterNode.clusterSize;
  }
  const header = view.header(node);
  if (header) {
    info["backing-filename"] = header.name;
    info["full-backing-filename"] = resolveBackingPath(
      view.child(node)?.node.filename ?? node.filename,
      header.name,
    );
    if (header.raw) info["backing-filename-format"] = "raw";
  }
  let depth = 0;
  const below = nested ? view.backingImage(node) : undefined;
  if (below) {
    const sub = await imageInfo(view, below, stat, true);
    info["backing-image"] = sub.info;
    depth = sub.depth + 1;
  }
  return { info, depth };
}

/** One node's `BlockDeviceInfo`. */
async function deviceInfo(
  view: NodeView,
  node: BlockNode,
  flat: boolean,
  stat: Stat,
): Promise<Record<string, unknown>> {
  const { info: image, depth } = await imageInfo(view, node, stat, !flat);
  const info: Record<string, unknown> = {
    file: view.filename(node),
    "node-name": node.nodeName,
    ro: node.readOnly,
    drv: node.driver,
  };
  if (node.backing) info.backing_file = view.filename(node.backing);
  Object.assign(info, {
    backing_file_depth: depth,
    encrypted: false,
    detect_zeroes: "off",
    bps: 0,
    bps_rd: 0,
    bps_wr: 0,
    iops: 0,
    iops_rd: 0,
    iops_wr: 0,
    image,
    cache: { writeback: true, direct: false, "no-flush": false },
    write_threshold: 0,
  });
  return info;
}

/**
 * `query-named-block-nodes`: every named node, newest first, as qemu lists
 * them (implicitly opened nodes only while in use).
 *
 * @example
 * ```ts ignore
 * const nodes = await queryNamedBlockNodes(graph, { flat: true, jobs });
 * console.log(nodes.map((n) => n["node-name"]));
 * ```
 */
export async function queryNamedBlockNodes(
  graph: BlockGraph,
  options: NamedBlockNodesOptions = {},
): Promise<Record<string, unknown>[]> {
  const view = new NodeView(graph, options.jobs);
  const stat = options.stat ?? denoStat;
  const out: Record<string, unknown>[] = [];
  for (const node of view.listed()) {
    out.push(await deviceInfo(view, node, options.flat ?? false, stat));
  }
  return out;
}

/** One node's `BlockDeviceInfo` (for `query-block`'s `inserted`). */
export function blockDeviceInfo(
  graph: BlockGraph,
  node: BlockNode,
  options: NamedBlockNodesOptions = {},
): Promise<Record<string, unknown>> {
  return deviceInfo(
    new NodeView(graph, options.jobs),
    node,
    options.flat ?? false,
    options.stat ?? denoStat,
  );
}
