/**
 * Per-node state shared by every device and job using a node: its request
 * tracker (qemu tracks requests per `BlockDriverState`), the copy-on-read
 * filters inserted above it, and the operation blocker of the job that owns it.
 *
 * @module
 */

import type { BlockNode } from "./node.ts";
import { RequestTracker } from "./request_tracker.ts";

/** A copy-on-read filter inserted above a node (by a stream job). */
export interface CorFilter {
  /** The filter's node name. */
  nodeName: string;
  /** Copy only data allocated down to and including this node; `null` = the whole chain. */
  bottom: BlockNode | null;
}

/** What is shared about one node. */
export interface NodeState {
  tracker: RequestTracker;
  filters: CorFilter[];
  blocker: string | undefined;
}

const states = new WeakMap<BlockNode, NodeState>();

/** The shared state of `node`, made on first use. */
export function nodeState(node: BlockNode): NodeState {
  let state = states.get(node);
  if (!state) {
    state = { tracker: new RequestTracker(), filters: [], blocker: undefined };
    states.set(node, state);
  }
  return state;
}
