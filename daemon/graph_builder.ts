/**
 * Builds block nodes from `--blockdev` / `blockdev-add` options, as
 * qemu-storage-daemon does: protocol nodes (`file`, `nbd`, `null-co`), format
 * nodes over them (`raw`, `qed`, whose backing chain is opened from the image
 * header unless `backing` names a node or is `null`), `copy-on-read`
 * filters and `blkdebug` error injection (`daemon/blkdebug.ts`).
 *
 * A backing file named in a header is opened as qemu opens it: a `file`
 * node and a format node over it, both automatically named and read-only,
 * registered after the node whose header names them; and every node's
 * origin (its file child, its options, whether it was opened implicitly) is
 * recorded for `query-named-block-nodes`.
 *
 * @module
 */

import { BlockDevice } from "../block/device.ts";
import { BlockError } from "../block/error.ts";
import type { BlockGraph } from "../block/graph.ts";
import type { BlockNode, BlockStatus } from "../block/node.ts";
import { qedNode } from "../block/qed_node.ts";
import { rawNode } from "../block/raw_node.ts";
import { openNbdNode } from "../block/nbd_node.ts";
import { sourceNode } from "../block/source_node.ts";
import { FileStorage } from "../io/file_storage.ts";
import type { Storage } from "../io/storage.ts";
import type { NbdAddress } from "../nbd/address.ts";
import { isNbdUri, parseNbdUri } from "../nbd/uri.ts";
import { QedImage } from "../qed/image.ts";
import { probeFormat, resolveBackingPath } from "../qed/open_file.ts";
import { type NodeOrigin, recordNodeOrigin } from "../qmp/named_block_nodes.ts";
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
  /** Nodes opened implicitly for it (a backing chain from its header), in opening order. */
  implicitNodes?: BlockNode[];
}

/** Builds and owns the nodes of one daemon. */
export class GraphBuilder {
  readonly graph: BlockGraph;
  #built: Built[] = [];
  #storages = new Map<BlockNode, Storage>();

  /** Builds into `graph`. */
  constructor(graph: BlockGraph) {
    this.graph = graph;
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
    return await this.#build(options, options["node-name"] ?? this.graph.autoName());
  }

  async #build(options: BlockdevOptions, nodeName: string, implicit = false): Promise<BlockNode> {
    if (this.graph.getNode(nodeName)) {
      throw new BlockError("DUPLICATE_NODE", `Duplicate nodes with node-name='${nodeName}'`);
    }
    this.graph.checkNodeRoom();
    const readOnly = options["read-only"] ?? false;
    const built = await this.#make(options, nodeName, readOnly);
    this.graph.addNode(built.node);
    // qemu names a node before it opens the backing chain its header names.
    for (const n of built.implicitNodes ?? []) {
      this.graph.removeNode(n);
      this.graph.addNode(n);
    }
    recordNodeOrigin(built.node, { ...built.origin, ...(implicit ? { implicit } : {}) });
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
    }
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
      true,
    );
    const driver = format ?? await probeFormat(this.#storages.get(file)!);
    return await this.#build(
      { driver, file: file.nodeName, "read-only": true },
      this.graph.autoName(),
      true,
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
      true,
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
    // The backing chain its header named goes with it, as qemu drops unused nodes.
    await this.#discard(built.implicitNodes ?? []);
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
  return {
    nodeName: options.nodeName,
    driver: options.driver,
    get filename() {
      return child.filename;
    },
    get size() {
      return child.size;
    },
    readOnly,
    get backing() {
      return child.backing;
    },
    ...(child.clusterSize === undefined ? {} : { clusterSize: child.clusterSize }),
    read: options.read ?? ((offset, buf) => child.read(offset, buf)),
    write: (offset, data) =>
      readOnly ? refuse() : options.write ? options.write(offset, data) : child.write(offset, data),
    writeZeroes: (offset, length) =>
      readOnly
        ? refuse()
        : options.writeZeroes
        ? options.writeZeroes(offset, length)
        : child.writeZeroes(offset, length),
    flush: () => child.flush(),
    blockStatus: (offset, length): Promise<BlockStatus> => child.blockStatus(offset, length),
    close: () => Promise.resolve(),
  };
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
