/**
 * Walking a backing chain as qemu's job commands do before they take it
 * (`bdrv_filter_or_cow_bs` from a node down to a base): every node met must
 * be free of other jobs' blockers. A stream's copy-on-read filter sits
 * between a node and its overlay, so a walk from above meets the filter, by
 * its node name, before the node itself.
 *
 * @module
 */

import { corFiltersOf } from "./device.ts";
import { BlockError } from "./error.ts";
import { type BlockGraph, nodeBlocker } from "./graph.ts";
import { type BlockNode, chainOf } from "./node.ts";

/** A node a chain walk meets: an image or a filter between two images. */
export interface WalkedNode {
  /** Its node name. */
  name: string;
  /** The blocker a job put on it, if any. */
  blocker: string | undefined;
}

/** Options of {@linkcode walkChain} and {@linkcode checkChainFree}. */
export interface ChainWalkOptions {
  /**
   * Whether filters inserted above `end` are met (default true: qemu walks
   * until it reaches `end` itself); false when the walk ends at a link, as
   * `block-stream`'s `bottom` does.
   */
  endFilters?: boolean;
}

/**
 * The nodes a walk from `from` down to `end` (exclusive; `null` = the whole
 * chain) meets, filters included.
 *
 * @example
 * ```ts ignore
 * for (const { name } of walkChain(top, base)) console.log(name);
 * ```
 */
export function* walkChain(
  from: BlockNode,
  end: BlockNode | null,
  options: ChainWalkOptions = {},
): Generator<WalkedNode> {
  const endFilters = options.endFilters ?? true;
  let first = true;
  for (const node of chainOf(from)) {
    if (node === end && !endFilters) return;
    if (!first) {
      // The filter carries its stream job's blocker, as the node below it does.
      for (const f of [...corFiltersOf(node)].reverse()) {
        yield { name: f.nodeName, blocker: nodeBlocker(node) };
      }
    }
    if (node === end) return;
    first = false;
    yield { name: node.nodeName, blocker: nodeBlocker(node) };
  }
}

/** Throws qemu's `Node 'X' is busy: …` for the first node of the walk another job blocks. */
export function checkChainFree(
  from: BlockNode,
  end: BlockNode | null,
  options: ChainWalkOptions = {},
): void {
  for (const { name, blocker } of walkChain(from, end, options)) {
    if (blocker !== undefined) {
      throw new BlockError("NODE_BUSY", `Node '${name}' is busy: ${blocker}`);
    }
  }
}

/**
 * Resolves a node given as itself or by node name: through `graph` when
 * there is one, else along the chain below `from`; fails with qemu's text.
 */
export function lookupChainNode(
  ref: BlockNode | string,
  graph: BlockGraph | undefined,
  from: BlockNode,
): BlockNode {
  if (typeof ref !== "string") return ref;
  if (graph) return graph.lookupNode(ref);
  for (const node of chainOf(from)) if (node.nodeName === ref) return node;
  throw new BlockError("NODE_NOT_FOUND", `Cannot find device='' nor node-name='${ref}'`);
}

/** Whether `node` is `from` or below it in its backing chain. */
export function chainContains(from: BlockNode, node: BlockNode): boolean {
  for (const n of chainOf(from)) if (n === node) return true;
  return false;
}
