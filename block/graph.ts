/**
 * The named nodes and devices of one daemon: lookups with qemu's texts,
 * automatic node names, and the operation blockers jobs put on nodes.
 *
 * @module
 */

import { BlockError } from "./error.ts";
import type { BlockDevice } from "./device.ts";
import { nodeState } from "./_node_state.ts";
import type { BlockNode } from "./node.ts";

/** Options of {@linkcode BlockGraph}. */
export interface BlockGraphOptions {
  /** Uniform numbers in [0, 1) for the two random digits of automatic names. Default: a fixed-seed generator. */
  random?: () => number;
  /** Nodes a graph holds before {@linkcode BlockGraph.checkNodeRoom} refuses more. Default {@linkcode MAX_NODES}. */
  maxNodes?: number;
}

/**
 * The default bound on the nodes of a graph. qemu has none (it trusts its
 * monitor); we bound it on purpose, because `blockdev-add` of a node that
 * needs no file (`null-co`, or `raw` over an existing node) costs nothing to
 * ask for, so a hostile client could otherwise grow the graph without end
 * (issue 8).
 */
export const MAX_NODES = 4096;

/**
 * An event of the block layer for the monitor, named and shaped as qemu's
 * monitor sends it (`QUORUM_REPORT_BAD`, `QUORUM_FAILURE`); job events have
 * their own channel (`JobRegistry.on`).
 */
export interface BlockEvent {
  /** qemu's event name. */
  event: string;
  /** The event's data, members in qemu's QAPI order. */
  data: object;
}

/** Receives the {@linkcode BlockEvent}s of a graph's nodes. */
export type BlockEventListener = (event: BlockEvent) => void;

/** A small deterministic generator (mulberry32) for automatic names. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The operation blocker on `node` (e.g. `"block device is in use by block job: stream"`), or `undefined`.
 */
export function nodeBlocker(node: BlockNode): string | undefined {
  return nodeState(node).blocker;
}

/**
 * Throws qemu's `Node '<name>' is busy: <reason>` if `node` is blocked.
 *
 * @example
 * ```ts ignore
 * checkNotBusy(top); // BlockError NODE_BUSY when a stream job owns it
 * ```
 */
export function checkNotBusy(node: BlockNode): void {
  const reason = nodeState(node).blocker;
  if (reason !== undefined) {
    throw new BlockError("NODE_BUSY", `Node '${node.nodeName}' is busy: ${reason}`);
  }
}

/** Puts a blocker on `node` until the returned function is called. */
export function blockNode(node: BlockNode, reason: string): () => void {
  const state = nodeState(node);
  state.blocker = reason;
  return () => {
    if (state.blocker === reason) state.blocker = undefined;
  };
}

/**
 * The nodes (by node-name) and devices (by name) of one daemon.
 *
 * @example
 * ```ts
 * import { BlockGraph } from "./graph.ts";
 * const graph = new BlockGraph();
 * console.log(graph.autoName().startsWith("#block0")); // true
 * try {
 *   graph.lookup("nonexist");
 * } catch (e) {
 *   console.log((e as Error).message); // Cannot find device='nonexist' nor node-name='nonexist'
 * }
 * ```
 */
export class BlockGraph {
  #backends = new Map<BlockNode, number>();
  #nodes = new Map<string, BlockNode>();
  #devices = new Map<string, BlockDevice>();
  #counter = 0;
  #listeners = new Set<BlockEventListener>();
  #random: () => number;
  readonly #maxNodes: number;

  /** Makes an empty graph. */
  constructor(options: BlockGraphOptions = {}) {
    this.#random = options.random ?? seeded(0x51ed);
    this.#maxNodes = options.maxNodes ?? MAX_NODES;
  }

  /**
   * Throws `TOO_MANY_NODES` when the graph is full. Called before a node is
   * opened, so a refused `blockdev-add` leaves nothing open; the nodes an image
   * opens implicitly (its backing chain) may pass the bound by their number.
   */
  checkNodeRoom(): void {
    if (this.#nodes.size >= this.#maxNodes) {
      throw new BlockError(
        "TOO_MANY_NODES",
        `Too many block nodes (at most ${this.#maxNodes}); remove some with blockdev-del`,
      );
    }
  }

  /** Adds a listener of the events of this graph's nodes; returns a function that removes it. */
  on(listener: BlockEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Sends a node's event to every listener. A listener that throws does not
   * disturb the request that raised the event: its error is rethrown on its own.
   */
  emit(event: BlockEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /** qemu's automatic node name: `#block`, a counter, two random digits (`#block093`, `#block138`). */
  autoName(): string {
    const rnd = Math.min(99, Math.floor(this.#random() * 100));
    return `#block${this.#counter++}${String(rnd).padStart(2, "0")}`;
  }

  /** Adds a node; throws `Duplicate nodes with node-name='…'` if its name is taken. */
  addNode(node: BlockNode): BlockNode {
    if (this.#nodes.has(node.nodeName)) {
      throw new BlockError(
        "NODE_NAME_IN_USE",
        `Duplicate nodes with node-name='${node.nodeName}'`,
      );
    }
    this.#nodes.set(node.nodeName, node);
    return node;
  }

  /** Removes a node (not its backing). */
  removeNode(node: BlockNode): void {
    if (this.#nodes.get(node.nodeName) === node) this.#nodes.delete(node.nodeName);
  }

  /**
   * Records that something outside the graph (an NBD export: qemu's anonymous
   * block backend) uses `node` until the returned function is called, so that
   * `blockdev-del` refuses to remove it.
   */
  attachBackend(node: BlockNode): () => void {
    this.#backends.set(node, (this.#backends.get(node) ?? 0) + 1);
    let attached = true;
    return () => {
      if (!attached) return;
      attached = false;
      const left = (this.#backends.get(node) ?? 1) - 1;
      if (left > 0) this.#backends.set(node, left);
      else this.#backends.delete(node);
    };
  }

  /** Whether a named device or an attached backend (see {@linkcode attachBackend}) uses `node`. */
  hasBackend(node: BlockNode): boolean {
    return this.#backends.has(node) || [...this.#devices.values()].some((d) => d.top === node);
  }

  /** Adds a named device. */
  addDevice(device: BlockDevice): BlockDevice {
    if (device.name === "" || this.#devices.has(device.name)) {
      throw new BlockError("DEVICE_NAME_IN_USE", `Device with id '${device.name}' already exists`);
    }
    this.#devices.set(device.name, device);
    return device;
  }

  /** Removes a device. */
  removeDevice(device: BlockDevice): void {
    if (this.#devices.get(device.name) === device) this.#devices.delete(device.name);
  }

  /** Every node, in the order added. */
  nodes(): BlockNode[] {
    return [...this.#nodes.values()];
  }

  /** Every device, in the order added. */
  devices(): BlockDevice[] {
    return [...this.#devices.values()];
  }

  /** The node with this node-name, or `undefined`. */
  getNode(name: string): BlockNode | undefined {
    return this.#nodes.get(name);
  }

  /** The device with this name, or `undefined`. */
  getDevice(name: string): BlockDevice | undefined {
    return this.#devices.get(name);
  }

  /**
   * A device name or a node name, as qemu's `device` arguments take:
   * `Cannot find device='X' nor node-name='X'`.
   */
  lookup(name: string): { node: BlockNode; device: BlockDevice | undefined } {
    const device = this.#devices.get(name);
    if (device) return { node: device.top, device };
    const node = this.#nodes.get(name);
    if (node) return { node, device: this.devices().find((d) => d.top === node) };
    throw new BlockError("NODE_NOT_FOUND", `Cannot find device='${name}' nor node-name='${name}'`);
  }

  /** A node name only, as `base-node` and `bottom` take: `Cannot find device='' nor node-name='X'`. */
  lookupNode(name: string): BlockNode {
    const node = this.#nodes.get(name);
    if (node) return node;
    throw new BlockError("NODE_NOT_FOUND", `Cannot find device='' nor node-name='${name}'`);
  }
}
