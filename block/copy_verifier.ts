/**
 * A check on data copied from the backing chain into a top node, before it
 * is written (copy-on-read and stream copies alike): a bad chunk never
 * reaches the overlay. The stream job attaches one built from a checksum
 * manifest (`block/manifest.ts`) while it runs.
 *
 * @module
 */

import type { BlockNode } from "./node.ts";

/** Checks bytes read from the backing chain of a top node. */
export interface CopyVerifier {
  /**
   * Resolves if `data` (the chain's bytes at `offset`) is right; rejects with
   * an error naming the offset otherwise.
   */
  check(offset: number, data: Uint8Array): Promise<void>;
}

const verifiers = new WeakMap<BlockNode, CopyVerifier>();

/** Attaches `verifier` to copies into `top` until the returned function is called. */
export function attachCopyVerifier(top: BlockNode, verifier: CopyVerifier): () => void {
  verifiers.set(top, verifier);
  return () => {
    if (verifiers.get(top) === verifier) verifiers.delete(top);
  };
}

/** The verifier attached to `top`, if any. */
export function copyVerifierOf(top: BlockNode): CopyVerifier | undefined {
  return verifiers.get(top);
}
