/**
 * The commit job: qemu 7.2's `block-commit` (`block/commit.c`, and
 * `block/mirror.c` for an active commit), the inverse of a stream: the data
 * of the images from `top` down to just above `base` is merged into `base`,
 * then those images leave the chain.
 *
 * Two kinds, as in qemu:
 *
 * - **Intermediate commit** (`top` below the device's top): one pass in
 *   chunks of at most 512 KiB (`COMMIT_CHUNK`); a run allocated anywhere
 *   from `top` down to just above `base` is read through `top` and written
 *   into `base`, everything else is skipped (progress counts both; only
 *   copies cost rate-limit time). On completion the overlay of `top` points
 *   its backing link at `base` and rewrites its header (`base`'s filename,
 *   `base`'s driver as format), as qemu's `bdrv_drop_intermediate`.
 * - **Active commit** (`top` is the device's top): mirror-like. Setup puts a
 *   write observer on the top node (qemu's dirty bitmap), so every write the
 *   guest makes while the job runs marks its range dirty; the first pass
 *   copies what the chain allocates above `base` (`len` is that many bytes,
 *   as qemu's mirror counts its initial dirty bitmap), then dirty ranges are
 *   copied again (`len` grows by what was written) until none is left; the
 *   job then enters `ready` (`BLOCK_JOB_READY`) and keeps copying new dirty
 *   ranges until `block-job-complete`. Completion takes a serialising
 *   request over the whole device on the top's request tracker, so no guest
 *   write runs while the last dirty ranges are copied and the device
 *   pivots: writes therefore always reach `base` before completion. The
 *   pivot emulates qemu's `bdrv_replace_node`: every user of the old top
 *   node (devices, exports, filters) from then on reads, writes and flushes
 *   `base`. A soft cancel (`block-job-cancel` without `force`) of a ready
 *   job completes without pivoting, as qemu's mirror does.
 *
 * Errors go through the `on-error` policy as in `commit_run`: `report`
 * fails the job, `stop` pauses it, and both `stop` (after resume) and
 * `ignore` retry the same chunk; an ignored error does not fail the job.
 * A read error is reported as `read`, a write error into `base` as `write`.
 *
 * @module
 */

import { chainContains, checkChainFree, lookupChainNode } from "./chain_walk.ts";
import { BlockDevice } from "./device.ts";
import { BlockError } from "./error.ts";
import { type BlockGraph, blockNode } from "./graph.ts";
import { type BlockJobOptions, Job, type JobType, type OnErrorPolicy } from "./job.ts";
import type { JobRegistry } from "./job_registry.ts";
import { checkVerb } from "./job_status.ts";
import { type BlockNode, chainOf, forwardingNode } from "./node.ts";
import { overlayOf } from "./_stream_common.ts";

/** qemu's commit buffer: 512 KiB per copy. */
export const COMMIT_CHUNK = 512 * 1024;

/** The granularity of the active commit's dirty tracking (qemu's default: the cluster size, 64 KiB). */
export const COMMIT_GRANULARITY = 64 * 1024;

/** What an active commit copies per iteration before it sleeps (qemu's mirror buffer, 16 MiB). */
export const MIRROR_BUFFER = 16 * 1024 * 1024;

/** The reason a commit job's nodes are blocked (qemu's text for `Node '…' is busy: …`). */
export const COMMIT_BLOCKER = "block device is in use by block job: commit";

/** Options of {@linkcode startCommit}, named after `block-commit`'s arguments. */
export interface CommitOptions extends BlockJobOptions {
  /** The top image's filename in the chain (`top`). */
  top?: string;
  /** The top node or its node name (`top-node`). */
  topNode?: BlockNode | string;
  /** The base image's filename in the chain (`base`). */
  base?: string;
  /** The base node or its node name (`base-node`). */
  baseNode?: BlockNode | string;
  /** The backing file name the overlay records (intermediate commits only). Default: the base's filename. */
  backingFile?: string;
  /** Node name of the commit filter. Default: an automatic name. */
  filterNodeName?: string;
  /** Chunk size in bytes, a positive multiple of 512. Default {@linkcode COMMIT_CHUNK}. */
  chunkSize?: number;
  /** The graph to look node names up in and to register the filter node in. */
  graph?: BlockGraph;
}

/** What {@linkcode resolveCommitChain} found. */
export interface CommitChain {
  /** The highest image whose data is merged. */
  top: BlockNode;
  /** The image that receives the data. */
  base: BlockNode;
  /** Whether `top` is the device's top (an active commit). */
  active: boolean;
}

/**
 * Checks `block-commit`'s arguments in qemu 7.2's order (after the device
 * lookup): the device not busy, `top`/`top-node`, `base`/`base-node`, not
 * committing an image into itself, every node from top down to base free.
 */
export function resolveCommitChain(device: BlockNode, options: CommitOptions): CommitChain {
  const { graph } = options;
  checkChainFree(device, device.backing);
  if (options.top !== undefined && options.topNode !== undefined) {
    throw new BlockError("BAD_ARGUMENT", "'top-node' and 'top' are mutually exclusive");
  }
  let top = device;
  if (options.topNode !== undefined) {
    top = lookupChainNode(options.topNode, graph, device);
    if (!chainContains(device, top)) {
      throw new BlockError(
        "TOP_NOT_IN_CHAIN",
        `'${top.nodeName}' is not in this backing file chain`,
      );
    }
  } else if (options.top !== undefined) {
    const name = options.top;
    const found = [...chainOf(device)].find((n) => n.filename === name);
    if (!found) throw new BlockError("TOP_NOT_FOUND", `Top image file ${name} not found`);
    top = found;
  }
  if (options.base !== undefined && options.baseNode !== undefined) {
    throw new BlockError("BAD_ARGUMENT", "'base-node' and 'base' are mutually exclusive");
  }
  let base: BlockNode | undefined;
  if (options.baseNode !== undefined) {
    base = lookupChainNode(options.baseNode, graph, top);
    if (!chainContains(top, base)) {
      throw new BlockError(
        "BASE_NOT_IN_CHAIN",
        `'${base.nodeName}' is not in this backing file chain`,
      );
    }
  } else if (options.base !== undefined) {
    const name = options.base;
    base = [...chainOf(top.backing)].find((n) => n.filename === name);
    if (!base) throw new BlockError("BASE_NOT_FOUND", `Can't find '${name}' in the backing chain`);
  } else {
    base = [...chainOf(top)].at(-1)!;
  }
  if (top === base) {
    throw new BlockError("BAD_ARGUMENT", "cannot commit an image into itself");
  }
  checkChainFree(top, base);
  const active = top === device;
  if (active && options.backingFile !== undefined) {
    throw new BlockError("BAD_ARGUMENT", "'backing-file' specified, but 'top' is the active layer");
  }
  if (!active) checkChainFree(overlayOf(device, top), top);
  return { top, base, active };
}

/** Internal settings of a {@linkcode CommitJob}. */
interface CommitSettings {
  id: string;
  device: BlockDevice;
  chain: CommitChain;
  options: CommitOptions;
  filterName: string;
  chunkSize: number;
}

/** The part of a node the active commit observes and, on pivot, redirects. */
type Patchable = Record<string, unknown>;

/** A running `block-commit` job. Create it with {@linkcode startCommit}. */
export class CommitJob extends Job {
  /** Always `"commit"`. */
  get type(): JobType {
    return "commit";
  }
  /** The device whose chain is committed. */
  readonly device: BlockDevice;
  /** The highest image merged. */
  readonly top: BlockNode;
  /** The image receiving the data. */
  readonly base: BlockNode;
  /** Whether this is an active commit (reaches `ready`, waits for complete). */
  readonly active: boolean;
  /** The commit filter's node name. */
  readonly filterName: string;
  /** Chunk size in bytes. */
  readonly chunkSize: number;
  readonly #onError: OnErrorPolicy;
  readonly #backingFile: string | undefined;
  readonly #graph: BlockGraph | undefined;
  readonly #filterNode: BlockNode;
  #release: (() => void)[] = [];
  /** Dirty granules of the active commit, by index. */
  readonly #dirty = new Set<number>();
  #cursor = 0;
  #completeRequested = false;
  #noPivot = false;

  /** Use {@linkcode startCommit}. */
  constructor(jobs: JobRegistry, settings: CommitSettings) {
    const { options } = settings;
    super(jobs, {
      id: settings.id,
      ...(options.autoFinalize !== undefined ? { autoFinalize: options.autoFinalize } : {}),
      ...(options.autoDismiss !== undefined ? { autoDismiss: options.autoDismiss } : {}),
    });
    this.device = settings.device;
    this.top = settings.chain.top;
    this.base = settings.chain.base;
    this.active = settings.chain.active;
    this.filterName = settings.filterName;
    this.chunkSize = settings.chunkSize;
    this.#onError = options.onError ?? "report";
    this.#backingFile = options.backingFile;
    this.#graph = options.graph;
    const top = this.top;
    const driver = this.active ? "mirror_top" : "commit_top";
    // As qemu shows it: read-only, the filtered image's name and cluster size, no backing.
    this.#filterNode = forwardingNode(top, {
      nodeName: settings.filterName,
      driver,
      readOnly: true,
      backing: null,
      filtered: top,
      close: () => Promise.resolve(),
      setBacking: false,
    });
  }

  /** Sets the initial speed and takes the nodes (blockers, filter, write observer). */
  setup(speed: number): void {
    this.initSpeed(speed);
    if (this.#graph) {
      this.#graph.addNode(this.#filterNode);
      this.#release.push(() => this.#graph?.removeNode(this.#filterNode));
    }
    const nodes = new Set<BlockNode>([this.device.top]);
    for (let n: BlockNode | null = this.top; n && n !== this.base; n = n.backing) nodes.add(n);
    nodes.add(this.base);
    for (const n of nodes) this.#release.push(blockNode(n, COMMIT_BLOCKER));
    if (this.active) this.#release.push(observeWrites(this.top, (o, l) => this.#markDirty(o, l)));
  }

  /**
   * An active commit counts as busy for the monitor: qemu's mirror answers a
   * cancel before the job's events, where a sleeping stream or intermediate
   * commit ends first (`query-block-jobs` still shows the real state).
   */
  override get busy(): boolean {
    return this.active || super.busy;
  }

  /** `block-job-complete`: accepted once ready (active commit only; intermediate ones never get there). */
  override complete(): void {
    checkVerb(this.id, this.status, "complete");
    this.#completeRequested = true;
    this.wake();
  }

  /** A soft cancel of a ready active commit completes without pivoting, as qemu's mirror. */
  override cancel(options: { force?: boolean } = {}): void {
    const ready = this.status === "ready" || this.status === "standby";
    if (ready && !options.force && !this.userPaused) {
      checkVerb(this.id, this.status, "cancel");
      this.#noPivot = true;
      this.#completeRequested = true;
      this.wake();
      return;
    }
    super.cancel(options);
  }

  /** The copy loop (see the module documentation). */
  protected override async run(): Promise<void> {
    if (this.active) await this.#runActive();
    else await this.#runIntermediate();
  }

  async #runIntermediate(): Promise<void> {
    const len = this.top.size;
    this.setTotalProgress(len);
    let delay = 0;
    for (let offset = 0; offset < len;) {
      await this.sleep(delay);
      delay = 0;
      if (this.cancelled) return;
      const n0 = Math.min(this.chunkSize, len - offset);
      const above = await this.device.allocatedAbove(this.top, this.#baseOverlayStop(), offset, n0);
      const n = above.length === 0 ? len - offset : Math.min(n0, above.length);
      if (above.allocated && above.length > 0) {
        if (!(await this.#copy(offset, n))) continue; // retry the same chunk
        delay = this.rateDelay(n);
      }
      this.addProgress(n);
      offset += n;
    }
  }

  async #runActive(): Promise<void> {
    const len = this.top.size;
    // The initial dirty bitmap: what the chain allocates above the base.
    for (let offset = 0; offset < len;) {
      const n0 = Math.min(this.chunkSize, len - offset);
      const above = await this.device.allocatedAbove(this.top, this.#baseOverlayStop(), offset, n0);
      const n = above.length === 0 ? len - offset : Math.min(n0, above.length);
      if (above.allocated && above.length > 0) this.#markDirty(offset, n, false);
      offset += n;
    }
    this.setTotalProgress(this.#dirty.size * COMMIT_GRANULARITY);
    let delay = 0;
    for (;;) {
      await this.sleep(delay);
      delay = 0;
      if (this.cancelled) return;
      if (this.#dirty.size > 0) {
        // One mirror iteration: copies up to its buffer's worth, then sleeps what they cost.
        let batch = 0;
        for (
          let run = this.#nextDirtyRun();
          run && batch < MIRROR_BUFFER;
          run = this.#nextDirtyRun()
        ) {
          for (let g = run.first; g < run.first + run.count; g++) this.#dirty.delete(g);
          const offset = run.first * COMMIT_GRANULARITY;
          const n = Math.min(run.count * COMMIT_GRANULARITY, len - offset);
          if (!(await this.#copy(offset, n))) {
            for (let g = run.first; g < run.first + run.count; g++) this.#dirty.add(g);
            break;
          }
          this.addProgress(run.count * COMMIT_GRANULARITY);
          batch += n;
          delay = this.rateDelay(n);
          if (this.cancelled) return;
        }
        continue;
      }
      if (this.status === "running") this.setReady();
      if (this.#completeRequested) return;
      // Parked until a write dirties a range, a complete, a cancel or a pause.
      await this.sleep(60_000);
    }
  }

  /** Copies `[offset, offset + n)` from `top` into `base`; false when the chunk must be retried. */
  async #copy(offset: number, n: number): Promise<boolean> {
    const buf = new Uint8Array(n);
    let operation: "read" | "write" = "read";
    try {
      await this.top.read(offset, buf);
      operation = "write";
      await this.base.write(offset, buf);
      return true;
    } catch (error) {
      const action = this.errorAction(this.#onError, error, operation);
      if (action === "report") throw error;
      return false;
    }
  }

  /** The lowest node whose data is merged (the allocation walk stops there). */
  #baseOverlayStop(): BlockNode {
    return overlayOf(this.top, this.base);
  }

  #markDirty(offset: number, length: number, grow = true): void {
    if (length <= 0) return;
    const first = Math.floor(offset / COMMIT_GRANULARITY);
    const last = Math.floor((offset + length - 1) / COMMIT_GRANULARITY);
    let added = 0;
    for (let g = first; g <= last; g++) {
      if (!this.#dirty.has(g)) added++;
      this.#dirty.add(g);
    }
    if (grow && added > 0) {
      this.setTotalProgress(this.totalProgress + added * COMMIT_GRANULARITY);
      this.wake();
    }
  }

  /** The next dirty run at or after the cursor, wrapping around, as qemu's mirror scans its bitmap. */
  #nextDirtyRun(): { first: number; count: number } | undefined {
    if (this.#dirty.size === 0) return undefined;
    const granules = Math.ceil(this.top.size / COMMIT_GRANULARITY);
    let first = -1;
    for (let i = 0; i < granules && first < 0; i++) {
      const g = (this.#cursor + i) % granules;
      if (this.#dirty.has(g)) first = g;
    }
    if (first < 0) return undefined;
    const per = Math.max(1, Math.floor(this.chunkSize / COMMIT_GRANULARITY));
    let count = 1;
    while (count < per && this.#dirty.has(first + count)) count++;
    this.#cursor = first + count;
    return { first, count };
  }

  /** Intermediate: re-point the overlay. Active: drain under a whole-device request, then pivot. */
  protected override async prepare(): Promise<void> {
    if (!this.active) {
      this.#releaseAll();
      await this.base.flush();
      // Every node above `top` moves to `base`, as qemu's bdrv_drop_intermediate updates
      // every parent: the device's overlay, and a node a stream beside us left behind.
      // Found after the flush and switched together, so a stream completing meanwhile
      // sees either the old chain or the new one.
      const overlays = new Set([overlayOf(this.device.top, this.top)]);
      for (const n of this.#graph?.nodes() ?? []) if (n.backing === this.top) overlays.add(n);
      for (const overlay of overlays) {
        if (!overlay.setBacking) {
          throw new BlockError(
            "EPERM",
            `Node '${overlay.nodeName}' cannot change its backing file`,
          );
        }
      }
      const change = {
        backingFile: this.#backingFile ?? this.base.filename,
        backingFormat: this.base.driver,
      };
      await Promise.all([...overlays].map((overlay) => overlay.setBacking!(this.base, change)));
      return;
    }
    const top = this.top;
    const size = top.size;
    // No guest request runs while the last dirty ranges are copied and the device pivots.
    await this.device.tracker.run(0, size, { serialising: true }, async () => {
      for (let run = this.#nextDirtyRun(); run; run = this.#nextDirtyRun()) {
        for (let g = run.first; g < run.first + run.count; g++) this.#dirty.delete(g);
        const offset = run.first * COMMIT_GRANULARITY;
        const n = Math.min(run.count * COMMIT_GRANULARITY, size - offset);
        const buf = new Uint8Array(n);
        await top.read(offset, buf);
        await this.base.write(offset, buf);
      }
      await this.base.flush();
      this.#releaseAll();
      if (!this.#noPivot) redirectNode(top, this.base);
    });
  }

  /** Removes the filter, the blockers and the write observer. */
  protected override clean(): void {
    this.#releaseAll();
  }

  #releaseAll(): void {
    for (const release of this.#release.splice(0).reverse()) release();
  }
}

/**
 * Calls `observer` with the range of every write and write-zeroes into
 * `node` until the returned function is called: qemu's dirty bitmap on the
 * mirror source, attached to the node so that every user of it is seen.
 */
function observeWrites(
  node: BlockNode,
  observer: (offset: number, length: number) => void,
): () => void {
  const target = node as unknown as Patchable;
  const own = {
    write: Object.getOwnPropertyDescriptor(node, "write"),
    writeZeroes: Object.getOwnPropertyDescriptor(node, "writeZeroes"),
  };
  const write = node.write.bind(node);
  const writeZeroes = node.writeZeroes.bind(node);
  // Marked once written (qemu sets dirty bits as a write completes): a copy started
  // earlier may have read the old bytes, so the range must be copied again after.
  target.write = async (offset: number, data: Uint8Array) => {
    await write(offset, data);
    observer(offset, data.length);
  };
  target.writeZeroes = async (offset: number, length: number) => {
    await writeZeroes(offset, length);
    observer(offset, length);
  };
  return () => {
    for (const key of ["write", "writeZeroes"] as const) {
      const d = own[key];
      if (d) Object.defineProperty(node, key, d);
      else delete target[key];
    }
  };
}

/**
 * The active commit's pivot (qemu's `bdrv_replace_node`): from now on every
 * user of `from` reaches `to` instead — reads, writes, status and size.
 */
function redirectNode(from: BlockNode, to: BlockNode): void {
  const define = (key: string, value: unknown) =>
    Object.defineProperty(from, key, { value, configurable: true, writable: true });
  define("read", (o: number, b: Uint8Array) => to.read(o, b));
  define("write", (o: number, d: Uint8Array) => to.write(o, d));
  define("writeZeroes", (o: number, l: number) => to.writeZeroes(o, l));
  define("flush", () => to.flush());
  define("blockStatus", async (o: number, l: number) => {
    const st = await to.blockStatus(o, l);
    return st;
  });
  Object.defineProperty(from, "size", { get: () => to.size, configurable: true });
  Object.defineProperty(from, "backing", { get: () => to.backing, configurable: true });
}

/**
 * `block-commit`: validates the arguments in qemu's order, creates the job
 * (`created`), applies the speed (a negative one ends the job again:
 * `created`, `null`, error) and starts it (`running`).
 *
 * @example
 * ```ts ignore
 * const job = startCommit(jobs, device, { jobId: "c0", topNode: "mid" });
 * await job.concluded; // device.top's backing is now base
 * ```
 */
export function startCommit(
  jobs: JobRegistry,
  target: BlockDevice | BlockNode,
  options: CommitOptions = {},
): CommitJob {
  const device = target instanceof BlockDevice ? target : new BlockDevice(target);
  const chain = resolveCommitChain(device.top, options);
  const chunkSize = options.chunkSize ?? COMMIT_CHUNK;
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0 || chunkSize % 512 !== 0) {
    throw new BlockError(
      "BAD_ARGUMENT",
      `Chunk size ${chunkSize} is not a positive multiple of 512`,
    );
  }
  const graph = options.graph;
  const filterName = options.filterNodeName ?? graph?.autoName() ?? `#commit-${chain.top.nodeName}`;
  if (graph?.getNode(filterName)) {
    throw new BlockError(
      "NODE_NAME_IN_USE",
      `Could not create node: Duplicate nodes with node-name='${filterName}'`,
    );
  }
  const id = options.jobId ?? device.name;
  jobs.checkNewId(id);
  if (chain.base.readOnly) throw new BlockError("READ_ONLY", "Block node is read-only");
  const job = new CommitJob(jobs, { id, device, chain, options, filterName, chunkSize });
  try {
    job.setup(options.speed ?? 0);
  } catch (error) {
    job.earlyFail();
    throw error;
  }
  job.start();
  return job;
}
