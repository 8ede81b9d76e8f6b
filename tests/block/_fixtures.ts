/**
 * Shared fixtures of the block tests: in-memory QED overlays over template
 * nodes, and node wrappers that inject latency, faults or a fast-check
 * scheduler into every request.
 *
 * @module
 */

import type { Scheduler } from "fast-check";
import { MemoryStorage } from "../../io/memory_storage.ts";
import type { Clock } from "../../io/clock.ts";
import { QedImage } from "../../qed/image.ts";
import { QedstreamError } from "../../io/error.ts";
import { type BlockNode, type BlockStatus, forwardingNode } from "../../block/node.ts";
import { qedNode } from "../../block/qed_node.ts";
import { sourceNode } from "../../block/source_node.ts";

/** A template whose bytes are known. */
export interface Template {
  bytes: Uint8Array;
  node: BlockNode;
}

/** A read-only template node over `bytes`. */
export function templateNode(
  bytes: Uint8Array,
  nodeName = "base",
  filename = "base.raw",
): Template {
  const node = sourceNode({
    size: bytes.length,
    read(offset, buf) {
      buf.set(bytes.subarray(offset, offset + buf.length));
      return Promise.resolve();
    },
  }, { nodeName, driver: "raw", filename });
  return { bytes, node };
}

/** Template bytes: runs of a pattern byte and zero runs, `size` long, seeded by `runs`. */
export function patternBytes(size: number, runs: { length: number; fill: number }[]): Uint8Array {
  const bytes = new Uint8Array(size);
  let pos = 0;
  let i = 0;
  while (pos < size && runs.length > 0) {
    const r = runs[i++ % runs.length]!;
    const end = Math.min(size, pos + r.length);
    for (let p = pos; p < end; p++) bytes[p] = r.fill === 0 ? 0 : (r.fill + p) & 0xff || 1;
    pos = end;
  }
  return bytes;
}

/** Makes an in-memory QED overlay over `backing`. */
export async function memOverlay(
  backing: BlockNode | null,
  options: { size?: number; clusterSize?: number; nodeName?: string } = {},
): Promise<BlockNode & { image: QedImage; storage: MemoryStorage }> {
  const storage = new MemoryStorage();
  const size = options.size ?? backing?.size ?? 1 << 20;
  await QedImage.create(storage, {
    size,
    clusterSize: options.clusterSize ?? 4096,
    ...(backing ? { backingFile: backing.filename, backingFormat: backing.driver } : {}),
  });
  const image = await QedImage.open(storage);
  const node = qedNode(image, { nodeName: options.nodeName ?? "ov", filename: "ov.qed", backing });
  return Object.assign(node, { storage });
}

/** Wraps a node so that every request first waits for the scheduler. */
export function scheduledNode(node: BlockNode, s: Scheduler, label: string): BlockNode {
  const wrap = <T>(what: string, f: () => Promise<T>): Promise<T> =>
    s.schedule(Promise.resolve(what), `${label}.${what}`).then(f);
  return delegate(node, wrap);
}

/** Wraps a source node with a link model: `latencyMs` per request plus transfer at `bytesPerMs` on one shared link. */
export function latencyNode(
  node: BlockNode,
  clock: Clock,
  latencyMs: number,
  bytesPerMs: number,
): BlockNode {
  let linkFree = 0;
  return delegate(node, (what, f, bytes) => {
    if (what !== "read") return f();
    const start = clock.now();
    const transfer = bytes / bytesPerMs;
    const begin = Math.max(start + latencyMs, linkFree);
    linkFree = begin + transfer;
    return clock.sleep(linkFree - start).then(f);
  });
}

/** Wraps a node so that reads overlapping `[offset, offset + length)` fail with `code` (`times` times, default always). */
export function faultyNode(
  node: BlockNode,
  fault: { offset: number; length: number; code: "EIO" | "ENOSPC"; times?: number },
): BlockNode & { failures: number } {
  let left = fault.times ?? Infinity;
  const wrapped = delegate(node, (what, f, bytes, offset) => {
    if (
      what === "read" && left > 0 && offset < fault.offset + fault.length &&
      fault.offset < offset + bytes
    ) {
      left--;
      result.failures++;
      return Promise.reject(new QedstreamError(fault.code, `injected ${fault.code}`));
    }
    return f();
  });
  const result = Object.assign(wrapped, { failures: 0 });
  return result;
}

type Around = <T>(what: string, f: () => Promise<T>, bytes: number, offset: number) => Promise<T>;

function delegate(node: BlockNode, around: Around): BlockNode {
  return forwardingNode(node, {
    read: (o, b) => around("read", () => node.read(o, b), b.length, o),
    write: (o, d) => around("write", () => node.write(o, d), d.length, o),
    writeZeroes: (o, n) => around("writeZeroes", () => node.writeZeroes(o, n), n, o),
    flush: () => around("flush", () => node.flush(), 0, 0),
    blockStatus: (o, n): Promise<BlockStatus> =>
      around("blockStatus", () => node.blockStatus(o, n), n, o),
  });
}

/** The guest-visible bytes of a node. */
export async function readAll(
  node: { size: number; read(o: number, b: Uint8Array): Promise<void> },
): Promise<Uint8Array> {
  const buf = new Uint8Array(node.size);
  await node.read(0, buf);
  return buf;
}

/** Index of the first differing byte, or -1. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
