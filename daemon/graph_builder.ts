/**
 * Builds block nodes from `--blockdev` / `blockdev-add` options, as
 * qemu-storage-daemon does: protocol nodes (`file`, `nbd`, `null-co`), format
 * nodes over them (`raw`, `qed`, whose backing chain is opened from the image
 * header unless `backing` names a node or is `null`), `copy-on-read`
 * filters, `blkdebug` error injection (`daemon/blkdebug.ts`) and `quorum`
 * nodes over children given inline or by name.
 *
 * A backing file named in a header is opened as qemu opens it: a `file`
 * node and a format node over it, both automatically named and read-only,
 * registered after the node whose header names them; and every node's
 * origin (its file child, its options, whether it was opened implicitly) is
 * recorded for `query-named-block-nodes`.
 *
 * @module
 */

import { BlockDevice, corFiltersOf } from "../block/device.ts";
import { BlockError } from "../block/error.ts";
import { type BlockGraph, nodeBlocker } from "../block/graph.ts";
import type { JobRegistry } from "../block/job_registry.ts";
import { type BlockNode, forwardingNode } from "../block/node.ts";
import { qedNode } from "../block/qed_node.ts";
import { rawNode } from "../block/raw_node.ts";
import { openNbdNode } from "../block/nbd_node.ts";
import { checkQuorumSettings, quorumNode, type QuorumSettings } from "../block/quorum.ts";
import { sourceNode } from "../block/source_node.ts";
import { FileStorage } from "../io/file_storage.ts";
import type { Storage } from "../io/storage.ts";
import type { NbdAddress } from "../nbd/address.ts";
import { isNbdUri, parseNbdUri } from "../nbd/uri.ts";
import { QedImage } from "../qed/image.ts";
import { probeFormat, resolveBackingPath } from "../qed/open_file.ts";
import { type NodeOrigin, nodeOrigin, recordNodeOrigin } from "../qmp/named_block_nodes.ts";
import { RawImage } from "../qed/raw_image.ts";
import { openBlkdebug } from "./blkdebug.ts";
import type { BlockdevOptions } from "./blockdev_schema.ts";

/** A node the daemon made, with how to release it. */
interface Built {
  node: BlockNode;
  /** The storage of a protocol node, for a format node to open. */
  storage?: Storage;
  /** Releases what this node owns (not its children). */
  close(): Promise<void>;
  /** How it was opened, for `query-named-block-nodes`. */
  origin?: NodeOrigin;
  /**
   * Nodes opened for it that go with it, in opening order: a backing chain
   * from its header, a quorum's inline children. They are named after it,
   * as qemu names a node before it opens these, and released with it.
   */
  implicitNodes?: BlockNode[];
}

/** Options of {@linkcode GraphBuilder}. */
export interface GraphBuilderOptions {
  /**
   * The daemon's jobs: nodes that go with a removed node but that a job
   * still uses (a stream of a quorum's inline child) are released when the
   * job lets go of them, as qemu's reference counting does. Without it they
   * stay until {@linkcode GraphBuilder.close}.
   */
  jobs?: JobRegistry;
}

/** Whether a job uses `node`: it blocks it, or its copy-on-read filter sits above it. */
function heldByJob(node: BlockNode): boolean {
  return nodeBlocker(node) !== undefined || corFiltersOf(node).length > 0;
}

/**
 * The nodes of `nodes` (in their order) that a job uses, with the nodes of
 * `nodes` below them (file child, backing, children), which serve them.
 */
function usedByJobs(nodes: BlockNode[]): BlockNode[] {
  const used = new Set<BlockNode>();
  const visit = (n: BlockNode | null | undefined): void => {
    if (!n || used.has(n) || !nodes.includes(n)) return;
    used.add(n);
    const origin = nodeOrigin(n);
    visit(origin?.file);
    visit(n.backing);
    for (const c of origin?.children ?? []) visit(c);
  };
  for (const n of nodes) if (heldByJob(n)) visit(n);
  return nodes.filter((n) => used.has(n));
}

/** Builds and owns the nodes of one daemon. */
export class GraphBuilder {
  readonly graph: BlockGraph;
  readonly #jobs: JobRegistry | undefined;
  #built: Built[] = [];
  #storages = new Map<BlockNode, Storage>();
  /** Names of nodes being opened: qemu has named them already, so a child may not take them. */
  #opening = new Set<string>();

  /** Builds into `graph`. */
  constructor(graph: BlockGraph, options: GraphBuilderOptions = {}) {
    this.graph = graph;
    this.#jobs = options.jobs;
  }

  /**
   * Adds the node `options` describes (and the inline children it defines),
   * registering each in the graph. Nothing is registered when it fails.
   */
  async add(options: BlockdevOptions): Promise<BlockNode> {
    const name = options["node-name"];
    if (name === undefined) {
      throw new BlockError("NODE_NAME_REQUIRED", "'node-name' must be specified for the root node");
    }
    return await this.#build(options, name);
  }

  async #child(ref: unknown): Promise<BlockNode> {
    if (typeof ref === "string") return this.graph.lookup(ref).node;
    const options = ref as BlockdevOptions;
    return await this.#build(options, options["node-name"] ?? this.graph.autoName(), {
      inline: true,
    });
  }

  async #build(
    options: BlockdevOptions,
    nodeName: string,
    how: { implicit?: boolean; inline?: boolean } = {},
  ): Promise<BlockNode> {
    if (this.graph.getNode(nodeName) || this.#opening.has(nodeName)) {
      throw new BlockError("DUPLICATE_NODE", `Duplicate nodes with node-name='${nodeName}'`);
    }
    this.graph.checkNodeRoom();
    const readOnly = options["read-only"] ?? false;
    this.#opening.add(nodeName);
    let built: Built;
    try {
      built = await this.#make(options, nodeName, readOnly);
    } finally {
      this.#opening.delete(nodeName);
    }
    this.graph.addNode(built.node);
    // qemu names a node before it opens the backing chain its header names.
    for (const n of built.implicitNodes ?? []) {
      this.graph.removeNode(n);
      this.graph.addNode(n);
    }
    recordNodeOrigin(built.node, {
      ...built.origin,
      ...(how.implicit ? { implicit: true } : {}),
      ...(how.inline ? { inline: true } : {}),
    });
    this.#built.push(built);
    if (built.storage) this.#storages.set(built.node, built.storage);
    return built.node;
  }

  async #make(options: BlockdevOptions, nodeName: string, readOnly: boolean): Promise<Built> {
    switch (options.driver) {
      case "file": {
        const filename = options.filename as string;
        const storage = await FileStorage.open(filename, { readOnly });
        const image = await RawImage.open(storage, { readOnly });
        const node = rawNode(image, { nodeName, filename, driver: "file" });
        return { node, storage, close: () => node.close() };
      }
      case "null-co": {
        const size = (options.size as number | undefined) ?? 2 ** 30;
        const node = sourceNode({ size, read: (_o, buf) => Promise.resolve(void buf.fill(0)) }, {
          nodeName,
          driver: "null-co",
          filename: "null-co://",
        });
        return { node, close: () => Promise.resolve() };
      }
      case "nbd": {
        const server = options.server as Record<string, string>;
        const address: NbdAddress = server.type === "unix"
          ? { type: "unix", path: server.path! }
          : { type: "inet", host: server.host!, port: Number(server.port) };
        const ms = (key: string) => Number(options[key] ?? 0) * 1000;
        // qemu's reconnect-delay / open-timeout are seconds; a stream reading while the
        // server is away waits reconnect-delay, then sees the error its on-error policy handles.
        const node = await openNbdNode({ address, exportName: (options.export as string) ?? "" }, {
          nodeName,
          readOnly,
          client: { reconnectDelay: ms("reconnect-delay"), openTimeout: ms("open-timeout") },
        });
        return { node, close: () => node.close() };
      }
      case "raw": {
        const child = await this.#child(options.file);
        const node = delegateNode(child, { nodeName, driver: "raw", readOnly });
        return { node, close: () => Promise.resolve(), origin: { file: child } };
      }
      case "copy-on-read": {
        const child = await this.#child(options.file);
        const bottomName = options.bottom as string | undefined;
        const bottom = bottomName === undefined ? null : this.graph.lookupNode(bottomName);
        const device = new BlockDevice(child, { copyOnRead: { bottom } });
        // Writes go through the device too: its request tracking is the child's, shared
        // with a running stream, so a write never races a copy of the same cluster.
        const node = delegateNode(child, {
          nodeName,
          driver: "copy-on-read",
          readOnly,
          read: (offset, buf) => device.read(offset, buf),
          write: (offset, data) => device.write(offset, data),
          writeZeroes: (offset, length) => device.writeZeroes(offset, length),
        });
        const origin = { file: child, ...(bottomName ? { options: { bottom: bottomName } } : {}) };
        return { node, close: () => Promise.resolve(), origin };
      }
      case "blkdebug": {
        const { debug, flat } = await openBlkdebug(options);
        const child = await this.#child(options.image);
        const node = delegateNode(child, {
          nodeName,
          driver: "blkdebug",
          readOnly,
          read: (o, buf) => debug.request("read", o, buf.length, () => child.read(o, buf)),
          write: (o, data) => debug.request("write", o, data.length, () => child.write(o, data)),
          writeZeroes: (o, n) => debug.request("write-zeroes", o, n, () => child.writeZeroes(o, n)),
        });
        const origin = { file: child, fileKey: "image", options: flat };
        return { node, close: () => Promise.resolve(), origin };
      }
      case "qed":
        return await this.#qed(options, nodeName, readOnly);
      case "quorum":
        return await this.#quorum(options, nodeName, readOnly);
    }
  }

  /**
   * A quorum: its settings are checked before any child is opened (qemu's
   * order, so a bad threshold wins over a bad child), then the children in
   * order; inline ones go with the quorum. Its events go to the graph.
   */
  async #quorum(options: BlockdevOptions, nodeName: string, readOnly: boolean): Promise<Built> {
    const refs = options.children as unknown[];
    const given: QuorumSettings = {
      voteThreshold: options["vote-threshold"] as number,
      ...(options["read-pattern"] !== undefined
        ? { readPattern: options["read-pattern"] as "quorum" | "fifo" }
        : {}),
      ...(options["rewrite-corrupted"] !== undefined
        ? { rewriteCorrupted: options["rewrite-corrupted"] as boolean }
        : {}),
      ...(options.blkverify !== undefined ? { blkverify: options.blkverify as boolean } : {}),
    };
    checkQuorumSettings(refs.length, given);
    const before = new Set(this.graph.nodes());
    const children: BlockNode[] = [];
    let node;
    try {
      for (const ref of refs) children.push(await this.#child(ref));
      node = quorumNode({
        nodeName,
        children,
        ...given,
        ...(readOnly ? { readOnly } : {}),
        onEvent: (event) => this.graph.emit(event),
      });
    } catch (e) {
      await this.#discard(this.graph.nodes().filter((n) => !before.has(n)));
      throw e;
    }
    // A json: filename shows those of qemu's strong options that were given, typed.
    const shown: Record<string, unknown> = {};
    for (const key of ["vote-threshold", "blkverify", "rewrite-corrupted", "read-pattern"]) {
      if (options[key] !== undefined) shown[key] = options[key];
    }
    return {
      node,
      close: () => node.close(),
      origin: { children, options: shown },
      implicitNodes: this.graph.nodes().filter((n) => !before.has(n)),
    };
  }

  async #qed(options: BlockdevOptions, nodeName: string, readOnly: boolean): Promise<Built> {
    const file = await this.#child(options.file);
    const storage = this.#storages.get(file);
    if (!storage) {
      throw new BlockError(
        "NOT_A_FILE",
        `Node '${file.nodeName}' cannot hold a QED image: its driver is '${file.driver}'`,
      );
    }
    // The file node keeps the storage; the image must not close it twice.
    const image = await QedImage.open(unclosable(storage), { readOnly });
    let backing: BlockNode | null = null;
    const before = new Set(this.graph.nodes());
    try {
      if (typeof options.backing === "string") {
        backing = this.graph.lookupNode(options.backing);
      } else if (options.backing && typeof options.backing === "object") {
        backing = await this.#child(options.backing);
      } else if (options.backing !== null && image.backingFile !== undefined) {
        backing = isNbdUri(image.backingFile)
          ? await this.#openNbdBacking(image.backingFile)
          : await this.#openBacking(
            resolveBackingPath(file.filename, image.backingFile),
            image.backingFormat === "raw" ? "raw" : undefined,
          );
      }
    } catch (e) {
      await this.#discard(this.graph.nodes().filter((n) => !before.has(n)));
      await image.close();
      throw e;
    }
    const implicitNodes = backing ? this.graph.nodes().filter((n) => !before.has(n)) : [];
    const node = qedNode(image, { nodeName, filename: file.filename, backing });
    return { node, close: () => node.close(), origin: { file }, implicitNodes };
  }

  /**
   * Opens a backing file named in a header as qemu does: a read-only `file`
   * node, then a format node over it (probed unless the header says raw),
   * both named automatically, the file node first.
   */
  async #openBacking(path: string, format: "raw" | undefined): Promise<BlockNode> {
    const file = await this.#build(
      { driver: "file", filename: path, "read-only": true },
      this.graph.autoName(),
      { implicit: true },
    );
    const driver = format ?? await probeFormat(this.#storages.get(file)!);
    return await this.#build(
      { driver, file: file.nodeName, "read-only": true },
      this.graph.autoName(),
      { implicit: true },
    );
  }

  /** Opens an NBD export named in a header (qemu's URI syntax) as a read-only `nbd` node. */
  async #openNbdBacking(uri: string): Promise<BlockNode> {
    const { address, exportName } = parseNbdUri(uri);
    const server = address.type === "unix"
      ? { type: "unix", path: address.path }
      : { type: "inet", host: address.host, port: String(address.port) };
    return await this.#build(
      { driver: "nbd", server, export: exportName, "read-only": true },
      this.graph.autoName(),
      { implicit: true },
    );
  }

  /** Removes a node added by {@linkcode add}: refused while another node uses it. */
  async remove(nodeName: string): Promise<void> {
    const index = this.#built.findIndex((b) => b.node.nodeName === nodeName);
    if (index < 0) {
      throw new BlockError("NODE_NOT_FOUND", `Failed to find node with node-name='${nodeName}'`);
    }
    const built = this.#built[index]!;
    this.#built.splice(index, 1);
    this.graph.removeNode(built.node);
    await built.close();
    // The backing chain its header named (or a quorum's inline children) goes with it,
    // as qemu drops unused nodes; what a job still uses, once the job lets go.
    const owned = built.implicitNodes ?? [];
    const kept = usedByJobs(owned);
    await this.#discard(owned.filter((n) => !kept.includes(n)));
    if (kept.length > 0) this.#discardWhenFree(kept);
  }

  /** Discards `nodes` once no job uses any of them (never without the jobs: then at close). */
  #discardWhenFree(nodes: BlockNode[]): void {
    const listening = { stop: () => {} };
    listening.stop = this.#jobs?.on(() => {
      if (nodes.some(heldByJob)) return;
      listening.stop();
      void this.#discard(nodes);
    }) ?? listening.stop;
  }

  /** Removes and closes nodes this builder made, newest first. */
  async #discard(nodes: BlockNode[]): Promise<void> {
    for (const node of [...nodes].reverse()) {
      const i = this.#built.findIndex((b) => b.node === node);
      if (i < 0) continue;
      const [built] = this.#built.splice(i, 1);
      this.graph.removeNode(node);
      await built!.close().catch(() => {});
    }
  }

  /** Closes every node, newest first (format nodes before the files below them). */
  async close(): Promise<void> {
    for (const built of this.#built.reverse()) {
      this.graph.removeNode(built.node);
      await built.close().catch(() => {});
    }
    this.#built = [];
  }
}

/** A node that passes everything to `child` (a raw format over a protocol, a filter). */
function delegateNode(
  child: BlockNode,
  options: {
    nodeName: string;
    driver: string;
    readOnly: boolean;
    read?: (offset: number, buf: Uint8Array) => Promise<void>;
    write?: (offset: number, data: Uint8Array) => Promise<void>;
    writeZeroes?: (offset: number, length: number) => Promise<void>;
  },
): BlockNode {
  const refuse = () =>
    Promise.reject(new BlockError("READ_ONLY", `Node '${options.nodeName}' is read-only`));
  const readOnly = options.readOnly || child.readOnly;
  const write = options.write ?? ((offset, data) => child.write(offset, data));
  const writeZeroes = options.writeZeroes ??
    ((offset, length) => child.writeZeroes(offset, length));
  return forwardingNode(child, {
    nodeName: options.nodeName,
    driver: options.driver,
    readOnly,
    ...(options.read ? { read: options.read } : {}),
    write: (offset, data) => readOnly ? refuse() : write(offset, data),
    writeZeroes: (offset, length) => readOnly ? refuse() : writeZeroes(offset, length),
    // The child belongs to its own entry: closing this node leaves it open.
    close: () => Promise.resolve(),
    setBacking: false,
  });
}

/** `storage`, except that closing it does nothing (its owner closes it). */
function unclosable(storage: Storage): Storage {
  return {
    read: (o, b) => storage.read(o, b),
    write: (o, d) => storage.write(o, d),
    flush: () => storage.flush(),
    size: () => storage.size(),
    truncate: (n) => storage.truncate(n),
    close: () => Promise.resolve(),
    ...("path" in storage ? { path: (storage as FileStorage).path } : {}),
  } as Storage;
}
