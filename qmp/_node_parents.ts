/**
 * Who uses a node, as qemu's checks on "root" nodes and on `blockdev-del`
 * see it: another node's backing, file child or quorum child, or a job.
 *
 * @module
 */

import { corFiltersOf } from "../block/device.ts";
import { type BlockGraph, nodeBlocker } from "../block/graph.ts";
import type { BlockNode } from "../block/node.ts";
import { nodeOrigin } from "./named_block_nodes.ts";

/** The nodes of `graph` that use `node` as their backing, file child or one of their children (a quorum's). */
export function parentNodes(graph: BlockGraph, node: BlockNode): BlockNode[] {
  return graph.nodes().filter((n) => {
    if (n === node) return false;
    const origin = nodeOrigin(n);
    return n.backing === node || origin?.file === node || !!origin?.children?.includes(node);
  });
}

/** Whether a job holds `node` (a blocker, or a stream's copy-on-read filter above it). */
export function heldByJob(node: BlockNode): boolean {
  return nodeBlocker(node) !== undefined || corFiltersOf(node).length > 0;
}

/** Whether `node` has no parent at all (qemu's `bdrv_is_root_node`). */
export function isRootNode(graph: BlockGraph, node: BlockNode): boolean {
  return !heldByJob(node) && parentNodes(graph, node).length === 0;
}
