/**
 * The file adapter of the block layer: opens an image file and its backing
 * chain (through `qed/open_file.ts`) and makes a node for each level.
 *
 * @module
 */

import { type OpenedImage, openImageFile, type OpenImageFileOptions } from "../qed/open_file.ts";
import { QedImage } from "../qed/image.ts";
import type { BlockGraph } from "./graph.ts";
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
}

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
  const opened = await openImageFile(path, options);
  const graph = options.graph;
  const levels: OpenedImage[] = [];
  for (let o: OpenedImage | null = opened; o; o = o.backing) levels.push(o);
  const nodes: BlockNode[] = [];
  let below: BlockNode | null = null;
  for (let i = levels.length - 1; i >= 0; i--) {
    const level = levels[i]!;
    const nodeName = i === 0 && options.nodeName !== undefined
      ? options.nodeName
      : graph?.autoName() ?? (i === 0 ? "top" : `backing${i}`);
    const node: BlockNode = level.image instanceof QedImage
      ? qedNode(level.image, { nodeName, filename: level.path, backing: below })
      : rawNode(level.image, { nodeName, filename: level.path });
    nodes.unshift(node);
    below = node;
  }
  for (const node of nodes) graph?.addNode(node);
  return {
    top: nodes[0]!,
    nodes,
    async close() {
      for (const node of nodes) graph?.removeNode(node);
      await opened.close();
    },
  };
}
