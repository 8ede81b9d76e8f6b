/**
 * What the guest sees: a top node over its backing chain, with request
 * tracking and copy-on-read (qemu's `BlockBackend` + generic block layer).
 *
 * Copy-on-read (`qed-format.md` §13.1): a read of a range the top does not
 * allocate is made a *serialising* request widened to whole clusters, so no
 * overlapping request runs meanwhile; after the wait the top's allocation is
 * checked again, each unallocated run (at most 16 MiB, the bounce-buffer
 * limit) is read through the top (that is, from the chain) and written into
 * the top — as zero clusters when the whole run is zero — and the asked
 * bytes are copied to the caller. Allocated runs are read directly. The write
 * goes through the top's normal allocating path, never an in-place write.
 *
 * A stream job inserts a copy-on-read *filter* with a `bottom` node above the
 * top ({@linkcode insertCorFilter}): while it is there, every device on that
 * top copies only data allocated down to `bottom`, as qemu's `copy-on-read`
 * driver does, and the stream's own prefetch reads go through the same path.
 *
 * @module
 */

import { copyVerifierOf } from "./copy_verifier.ts";
import { BlockError, checkRequestRange } from "./error.ts";
import { guestFirstOf } from "./guest_first.ts";
import { workingSetRecorderOf } from "./working_set_recorder.ts";
import { type CorFilter, nodeState } from "./_node_state.ts";
import type { BlockNode, BlockStatusKind } from "./node.ts";
import type { RequestTracker } from "./request_tracker.ts";

export type { CorFilter } from "./_node_state.ts";

/** qemu's copy-on-read bounce-buffer limit (`MAX_BOUNCE_BUFFER`). */
export const MAX_BOUNCE_BUFFER = 16 * 1024 * 1024;

/** The status of a run through the whole chain. */
export interface ChainStatus {
  /** `data` or `zero` in the node at `depth`; `unallocated` when no node of the chain has it (reads as zeros). */
  kind: BlockStatusKind;
  /** 0 = the top, 1 = its backing, ...; the chain's length when unallocated everywhere. */
  depth: number;
  /** Length of the run, at least 1 and at most the asked length. */
  length: number;
  /** The node that holds the run, or `null`. */
  node: BlockNode | null;
}

/** Whether a run is allocated in a part of the chain (qemu's `bdrv_is_allocated_above`). */
export interface AllocationAbove {
  /** Whether some node of the part allocates the run. */
  allocated: boolean;
  /** Length of the run; 0 when `offset` is past the end of the part's first node. */
  length: number;
}

/** Copy-on-read settings of a {@linkcode BlockDevice}. */
export interface CopyOnReadOptions {
  /** Copy only data allocated down to and including this node. Default: the whole chain. */
  bottom?: BlockNode | null;
}

/** Options of {@linkcode BlockDevice}. */
export interface BlockDeviceOptions {
  /** The device (BlockBackend) name; the default job id. Default `""` (a bare node, as in qemu-storage-daemon). */
  name?: string;
  /** Copy-on-read for every guest read (qemu's `copy-on-read=on`). Default off. */
  copyOnRead?: boolean | CopyOnReadOptions;
}

/** Options of {@linkcode BlockDevice.populate}. */
export interface PopulateOptions {
  /** Copy only data allocated down to and including this node; `null` = the whole chain. */
  bottom: BlockNode | null;
}

/**
 * Inserts a copy-on-read filter above `top` (for every device using it)
 * until the returned function is called.
 */
export function insertCorFilter(top: BlockNode, filter: CorFilter): () => void {
  const filters = nodeState(top).filters;
  filters.push(filter);
  return () => {
    const i = filters.indexOf(filter);
    if (i >= 0) filters.splice(i, 1);
  };
}

/** The copy-on-read filters currently above `top`, oldest first. */
export function corFiltersOf(top: BlockNode): readonly CorFilter[] {
  return nodeState(top).filters;
}

/** Bounce buffers kept for reuse, by size, holding at most {@linkcode BOUNCE_POOL_BYTES} in all. */
const bouncePool = new Map<number, Uint8Array[]>();
const BOUNCE_POOL_BYTES = 32 * 1024 * 1024;
let pooledBytes = 0;

/**
 * A bounce buffer of `n` bytes, reused when one is free: a stream allocates
 * one per chunk, and fresh ones pile up as external memory until V8 collects
 * them (the process's peak memory grows by tens of MiB).
 */
function takeBounce(n: number): Uint8Array {
  const buffer = bouncePool.get(n)?.pop();
  if (!buffer) return new Uint8Array(n);
  pooledBytes -= n;
  return buffer;
}

/** Returns a bounce buffer once nothing refers to it any more (the write has completed). */
function giveBounce(buffer: Uint8Array): void {
  if (pooledBytes + buffer.length > BOUNCE_POOL_BYTES) return;
  let free = bouncePool.get(buffer.length);
  if (!free) bouncePool.set(buffer.length, free = []);
  free.push(buffer);
  pooledBytes += buffer.length;
}

function isZero(buf: Uint8Array): boolean {
  const words = buf.byteOffset % 4 === 0 ? Math.floor(buf.length / 4) : 0;
  const view = new Uint32Array(buf.buffer, buf.byteOffset, words);
  for (let i = 0; i < view.length; i++) if (view[i] !== 0) return false;
  for (let i = words * 4; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * A guest-visible block device over a top node: reads and writes at any
 * offset and length, copy-on-read, block status through the chain.
 *
 * @example Copy-on-read fills the top from its backing
 * ```ts ignore
 * const device = new BlockDevice(top, { copyOnRead: true });
 * const buf = new Uint8Array(4096);
 * await device.read(4096, buf);           // cluster 0 is now allocated in top
 * console.log((await device.blockStatus(0, 65536)).depth); // 0
 * ```
 */
export class BlockDevice {
  /** The node the guest writes into. */
  readonly top: BlockNode;
  /** The device name (`""` for a bare node). */
  readonly name: string;
  readonly #tracker: RequestTracker;
  readonly #cor: CopyOnReadOptions | undefined;

  /** Makes a device over `top`; throws qemu's text for copy-on-read on a read-only node. */
  constructor(top: BlockNode, options: BlockDeviceOptions = {}) {
    this.top = top;
    this.name = options.name ?? "";
    this.#tracker = nodeState(top).tracker;
    const cor = options.copyOnRead;
    this.#cor = cor === true ? {} : cor === false || cor === undefined ? undefined : cor;
    if (this.#cor && top.readOnly) {
      throw new BlockError("READ_ONLY", "Can't use copy-on-read on read-only device");
    }
  }

  /** Virtual size of the device in bytes. */
  get size(): number {
    return this.top.size;
  }

  /** The request tracker of the top node (shared by every device and job on it). */
  get tracker(): RequestTracker {
    return this.#tracker;
  }

  /** Reads `buf.length` bytes at `offset`, copying on read if enabled or a filter is inserted. */
  async read(offset: number, buf: Uint8Array): Promise<void> {
    this.#checkRange(offset, buf.length);
    if (buf.length === 0) return;
    const recorder = workingSetRecorderOf(this.top);
    if (recorder?.recording) await this.#recordMisses(recorder, offset, buf.length);
    const scheduler = guestFirstOf(this.top);
    if (scheduler) {
      // Guest first (block/guest_first.ts): a read the top does not wholly hold goes ahead of stream copies.
      const st = await this.top.blockStatus(offset, buf.length);
      const miss = st.kind === "unallocated" || st.length < buf.length;
      return await scheduler.guestIo(miss, () => this.#read(offset, buf));
    }
    await this.#read(offset, buf);
  }

  async #read(offset: number, buf: Uint8Array): Promise<void> {
    const filter = nodeState(this.top).filters[0];
    if (filter) return await this.#filterRead(offset, buf.length, buf, filter.bottom);
    if (this.#cor) {
      const bottom = this.#cor.bottom;
      if (bottom !== undefined) return await this.#filterRead(offset, buf.length, buf, bottom);
      return await this.#copyOnRead(offset, buf.length, buf);
    }
    await this.#plainRead(offset, buf);
  }

  /** Writes `data` at `offset` (waits only for overlapping copy-on-read copies). */
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#checkRange(offset, data.length);
    this.#checkWritable();
    if (data.length === 0) return;
    const scheduler = guestFirstOf(this.top);
    if (scheduler) {
      const miss = await this.#fillsFromBacking(offset, data.length);
      return await scheduler.guestIo(
        miss,
        () => this.#tracker.run(offset, data.length, {}, () => this.top.write(offset, data)),
      );
    }
    await this.#tracker.run(offset, data.length, {}, () => this.top.write(offset, data));
  }

  /** Makes `[offset, offset + length)` read as zeros (zero clusters where aligned). */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#checkRange(offset, length);
    this.#checkWritable();
    if (length === 0) return;
    await this.#tracker.run(offset, length, {}, () => this.top.writeZeroes(offset, length));
  }

  /** Flushes the top node. */
  async flush(): Promise<void> {
    await this.top.flush();
  }

  /**
   * The status of the run at `offset` through the chain: allocated in the top
   * (`depth` 0), in the chain (`depth` ≥ 1, with the node), or nowhere.
   * Past the end of a shorter backing node the run reads as zeros and is
   * reported as `zero` at that node, as qemu does.
   */
  async blockStatus(offset: number, length: number): Promise<ChainStatus> {
    this.#checkRange(offset, length);
    let n = Math.max(1, Math.min(length, this.size - offset));
    let depth = 0;
    for (let node: BlockNode | null = this.top; node; node = node.backing, depth++) {
      if (offset >= node.size) return { kind: "zero", depth, length: n, node };
      const st = await node.blockStatus(offset, Math.min(n, node.size - offset));
      if (st.kind !== "unallocated") return { kind: st.kind, depth, length: st.length, node };
      n = Math.min(n, st.length);
    }
    return { kind: "unallocated", depth, length: n, node: null };
  }

  /**
   * Whether the run at `offset` is allocated in `from` or any node below it
   * down to and including `bottom` (`null` = to the end of the chain).
   * `length` 0 means `offset` is past the end of `from` (the stream then
   * stops early, as qemu's does).
   */
  async allocatedAbove(
    from: BlockNode | null,
    bottom: BlockNode | null,
    offset: number,
    length: number,
  ): Promise<AllocationAbove> {
    let n = length;
    for (let node = from; node; node = node.backing) {
      if (offset >= node.size) {
        // The first node ends here: nothing more to find. A lower one that is
        // shorter synthesises zeros "allocated" at its level (qemu's EOF rule).
        return node === from ? { allocated: false, length: 0 } : { allocated: true, length: n };
      }
      const st = await node.blockStatus(offset, Math.min(n, node.size - offset));
      if (st.kind !== "unallocated") return { allocated: true, length: st.length };
      n = Math.min(n, st.length);
      if (node === bottom) break;
    }
    return { allocated: false, length: n };
  }

  /**
   * The stream's prefetch read: copies into the top what `[offset, offset +
   * length)` holds down to `bottom` (through the copy-on-read filter path)
   * without returning the data.
   */
  async populate(offset: number, length: number, options: PopulateOptions): Promise<void> {
    this.#checkRange(offset, length);
    this.#checkWritable();
    if (length === 0) return;
    const scheduler = guestFirstOf(this.top);
    if (scheduler) {
      return await scheduler.streamCopy(
        length,
        () => this.#filterRead(offset, length, null, options.bottom),
      );
    }
    await this.#filterRead(offset, length, null, options.bottom);
  }

  // ---- internals ------------------------------------------------------------

  /** Notes the runs of `[offset, offset + length)` the top lacks in a working-set recorder. */
  async #recordMisses(
    recorder: { record(offset: number, length: number): void },
    offset: number,
    length: number,
  ): Promise<void> {
    if (!this.top.backing) return;
    for (let pos = offset, end = offset + length; pos < end;) {
      const st = await this.top.blockStatus(pos, end - pos);
      const n = Math.max(1, Math.min(st.length, end - pos));
      if (st.kind === "unallocated") recorder.record(pos, n);
      pos += n;
    }
  }

  /** Whether a write of `[offset, offset + length)` starts or ends inside a cluster the top lacks. */
  async #fillsFromBacking(offset: number, length: number): Promise<boolean> {
    const cs = this.top.clusterSize;
    if (!cs || !this.top.backing) return false;
    const end = offset + length;
    for (const at of [offset % cs !== 0 ? offset : -1, end % cs !== 0 ? end - 1 : -1]) {
      if (at >= 0 && (await this.top.blockStatus(at, 1)).kind === "unallocated") return true;
    }
    return false;
  }

  #checkRange(offset: number, length: number): void {
    checkRequestRange(offset, length, this.size, "device");
  }

  #checkWritable(): void {
    if (this.top.readOnly) {
      throw new BlockError("READ_ONLY", `Node '${this.top.nodeName}' is read only`);
    }
  }

  async #plainRead(offset: number, buf: Uint8Array): Promise<void> {
    await this.#tracker.run(offset, buf.length, {}, () => this.top.read(offset, buf));
  }

  /** qemu's `cor_co_preadv_part`: copy what is allocated down to `bottom`, read the rest plainly. */
  async #filterRead(
    offset: number,
    length: number,
    buf: Uint8Array | null,
    bottom: BlockNode | null,
  ): Promise<void> {
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const st = await this.top.blockStatus(pos, end - pos);
      let n = Math.max(1, Math.min(st.length, end - pos));
      let copy = false;
      if (st.kind === "unallocated") {
        const above = await this.allocatedAbove(this.top.backing, bottom, pos, n);
        if (above.length === 0) {
          // Past the end of the backing chain: nothing to copy; a guest still gets its zeros.
          if (buf) await this.#plainRead(pos, buf.subarray(pos - offset));
          return;
        }
        n = Math.min(n, above.length);
        copy = above.allocated;
      }
      if (copy) {
        await this.#copyOnRead(pos, n, buf?.subarray(pos - offset, pos - offset + n) ?? null);
      } else if (buf) await this.#plainRead(pos, buf.subarray(pos - offset, pos - offset + n));
      pos += n;
    }
  }

  /** qemu's `bdrv_co_do_copy_on_readv` inside a serialising request widened to clusters. */
  async #copyOnRead(offset: number, length: number, buf: Uint8Array | null): Promise<void> {
    const top = this.top;
    const align = Math.max(1, top.clusterSize ?? 1);
    await this.#tracker.run(offset, length, { serialising: true, alignment: align }, async () => {
      const start = Math.floor(offset / align) * align;
      const stop = Math.min(Math.ceil((offset + length) / align) * align, top.size);
      const end = offset + length;
      let pos = start;
      while (pos < stop) {
        const st = await top.blockStatus(pos, Math.min(stop - pos, MAX_BOUNCE_BUFFER));
        const n = Math.max(1, Math.min(st.length, stop - pos, MAX_BOUNCE_BUFFER));
        const from = Math.max(pos, offset);
        const to = Math.min(pos + n, end);
        if (st.kind === "unallocated") {
          const bounce = takeBounce(n);
          try {
            await top.read(pos, bounce);
            // A verified copy (block/copy_verifier.ts) checks the chain's bytes before the top keeps them.
            await copyVerifierOf(top)?.check(pos, bounce);
            if (isZero(bounce)) await top.writeZeroes(pos, n);
            else await top.write(pos, bounce);
            if (buf && from < to) buf.set(bounce.subarray(from - pos, to - pos), from - offset);
          } finally {
            giveBounce(bounce);
          }
        } else if (buf && from < to) {
          await top.read(from, buf.subarray(from - offset, to - offset));
        }
        pos += n;
      }
    });
  }
}
