/**
 * The stream job: qemu 7.2's `block-stream` (`block/stream.c`), plus
 * parallel chunks.
 *
 * Setup inserts a copy-on-read filter above the top (so guest reads through
 * any device on it populate the top too), blocks the top and every node down
 * to the base for other jobs, and applies the speed. The run loop walks the
 * device in chunks of at most 512 KiB (`STREAM_CHUNK`):
 *
 * 1. sleep the delay the rate limit computed after the previous copy — always
 *    yielding, this is the pause point; stop if cancelled;
 * 2. a run allocated in the top is skipped; otherwise, if it is allocated in
 *    the chain from the top's backing down to the node above the base, it is
 *    copied by a prefetch read through the filter (serialising, cluster
 *    widened, zero runs as zero clusters), else skipped; past the end of the
 *    backing the rest is skipped at once;
 * 3. an error goes through the `on-error` policy (`stop` retries the same
 *    chunk after resume, `ignore` goes on but still fails the job, `report`
 *    fails it);
 * 4. progress counts copied and skipped bytes; only copies cost rate-limit
 *    time.
 *
 * On success the job, once finalized, points the top's backing at the base
 * (or removes it) and rewrites the image header as qemu does; on cancel or
 * failure the backing link stays and what was copied stays (consistent: a
 * copied cluster equals what the backing held), so a later stream skips it.
 *
 * Beyond qemu, `parallel` chunks may be in flight at once (each still a
 * serialising copy, so coherence with guest I/O is unchanged): streaming from
 * a slow-to-answer source then runs at the link's rate instead of one chunk
 * per round trip. With `parallel: 1` the loop is qemu's exactly.
 *
 * Also beyond qemu (issue 9), each off by default:
 *
 * - `workingSet`: ranges copied first, in the given order (a recorded boot,
 *   `block/working_set.ts`), before the usual pass from offset 0; each piece
 *   of the first pass goes straight to the copy path, which copies only what
 *   the top lacks and the chain holds (so its rate-limit cost is the piece's
 *   length even when little is copied); bytes it accounted are not counted
 *   again, so `len` stays the device size and `offset` the bytes processed;
 * - `verifier`: every copy into the top (the stream's and, while the job
 *   runs, the guest's copy-on-read) is checked before it is written
 *   (`block/manifest.ts`); a mismatch is a read error of the chunk, so the
 *   `on-error` policy applies, and {@linkcode StreamJob.checksumMismatch}
 *   names its offset;
 * - `guestFirst`: a scheduler (`block/guest_first.ts`) that holds the
 *   stream's copies back while guest reads miss the top.
 *
 * @module
 */

import { attachCopyVerifier, type CopyVerifier } from "./copy_verifier.ts";
import { BlockDevice, insertCorFilter } from "./device.ts";
import { attachGuestFirst, type GuestFirstScheduler } from "./guest_first.ts";
import { ChecksumMismatchError } from "./manifest.ts";
import { RangeSet } from "./_range_set.ts";
import type { ByteRange } from "./working_set.ts";
import { BlockError } from "./error.ts";
import { type BlockGraph, blockNode } from "./graph.ts";
import { chainContains, checkChainFree, lookupChainNode } from "./chain_walk.ts";
import { type BlockJobOptions, Job, type JobType, type OnErrorPolicy } from "./job.ts";
import type { JobRegistry } from "./job_registry.ts";
import { type BlockNode, chainOf, forwardingNode } from "./node.ts";
import { overlayOf, planPiece, rewriteBacking } from "./_stream_common.ts";

/** qemu's stream chunk: 512 KiB. */
export const STREAM_CHUNK = 512 * 1024;

/**
 * Default number of chunks in flight: the smallest count reaching 85 % of the
 * best rate, measured on the virtual clock with a latency-injecting source
 * (`tests/block/stream_parallel_test.ts`). Over a 20 ms / 200 MiB/s link,
 * MiB/s by count: 1 → 22, 2 → 44, 4 → 87, 8 → 162, 16 → 178, 32 → 178 (the
 * link's rate after the first round trip). It costs 8 × 512 KiB of bounce
 * buffers, and nothing on a fast local link.
 */
export const DEFAULT_STREAM_PARALLEL = 8;

/** The reason a stream job's nodes are blocked (qemu's text for `Node '…' is busy: …`). */
export const STREAM_BLOCKER = "block device is in use by block job: stream";

/** Options of {@linkcode startStream}, named after `block-stream`'s arguments. */
export interface StreamOptions extends BlockJobOptions {
  /** How the client named the device, for error texts. Default: the device name or the top's node name. */
  deviceName?: string;
  /** Filename of the base in the chain (`base`). */
  base?: string;
  /** The base node or its node name (`base-node`). */
  baseNode?: BlockNode | string;
  /** The last node to stream, inclusive (`bottom`), or its node name. */
  bottom?: BlockNode | string;
  /** The backing file name to record on completion (only with a base); not validated, as in qemu. */
  backingFile?: string;
  /** Node name of the copy-on-read filter. Default: an automatic name. */
  filterNodeName?: string;
  /** Chunk size in bytes, a positive multiple of 512. Default {@linkcode STREAM_CHUNK}. */
  chunkSize?: number;
  /** Chunks in flight, at least 1. Default {@linkcode DEFAULT_STREAM_PARALLEL}. */
  parallel?: number;
  /** The graph to look node names up in and to register the filter node in. */
  graph?: BlockGraph;
  /** Ranges to copy first, in this order (a working set); parts past the end are ignored. Default none. */
  workingSet?: readonly ByteRange[];
  /** Checks every copy into the top while the job runs (a manifest). Default none. */
  verifier?: CopyVerifier;
  /** Serves guest misses ahead of the stream's copies while the job runs. Default none. */
  guestFirst?: GuestFirstScheduler;
}

/** What a management layer may add to the next stream started on a node. */
export type StreamExtras = Pick<StreamOptions, "workingSet" | "verifier" | "guestFirst">;

const armedExtras = new WeakMap<BlockNode, StreamExtras>();

/**
 * Arms `extras` for the next {@linkcode startStream} on `top`, which takes
 * them (options it is given win), until the returned function is called:
 * how a QMP extension adds them to a `block-stream` handler it does not own.
 */
export function armStreamExtras(top: BlockNode, extras: StreamExtras): () => void {
  armedExtras.set(top, extras);
  return () => {
    if (armedExtras.get(top) === extras) armedExtras.delete(top);
  };
}

/** What {@linkcode resolveStreamChain} found. */
export interface StreamChain {
  /** The new backing after completion: the base, or `null` for a full stream. */
  base: BlockNode | null;
  /** The lowest node whose data is copied (qemu's `base_overlay`). */
  baseOverlay: BlockNode;
}

/**
 * Checks `block-stream`'s arguments in qemu's order (`qmp-streaming.md` §2.2,
 * checks 1–9) and finds the base and the base overlay.
 */
export function resolveStreamChain(top: BlockNode, options: StreamOptions): StreamChain {
  const { base, baseNode, bottom, graph } = options;
  const deviceName = options.deviceName ?? top.nodeName;
  if (base !== undefined && baseNode !== undefined) {
    throw new BlockError(
      "BAD_ARGUMENT",
      "'base' and 'base-node' cannot be specified at the same time",
    );
  }
  if (base !== undefined && bottom !== undefined) {
    throw new BlockError(
      "BAD_ARGUMENT",
      "'base' and 'bottom' cannot be specified at the same time",
    );
  }
  if (bottom !== undefined && baseNode !== undefined) {
    throw new BlockError(
      "BAD_ARGUMENT",
      "'bottom' and 'base-node' cannot be specified at the same time",
    );
  }
  let baseBs: BlockNode | null = null;
  let bottomBs: BlockNode | null = null;
  if (base !== undefined) {
    baseBs = [...chainOf(top.backing)].find((n) => n.filename === base) ?? null;
    if (!baseBs) {
      throw new BlockError("BASE_NOT_FOUND", `Can't find '${base}' in the backing chain`);
    }
  }
  if (baseNode !== undefined) {
    const named = lookupChainNode(baseNode, graph, top);
    // Another job's filter (a commit's `filter-node-name`) stands for the node it filters.
    baseBs = named.filtered ?? named;
    if (baseBs === top || !chainContains(top, baseBs)) {
      throw new BlockError(
        "BASE_NOT_IN_CHAIN",
        `Node '${named.nodeName}' is not a backing image of '${deviceName}'`,
      );
    }
  }
  if (bottom !== undefined) {
    bottomBs = lookupChainNode(bottom, graph, top);
    if (!chainContains(top, bottomBs)) {
      throw new BlockError(
        "BOTTOM_NOT_IN_CHAIN",
        `Node '${bottomBs.nodeName}' is not in a chain starting from '${deviceName}'`,
      );
    }
  }
  // Filters of other jobs in the chain count too (block/chain_walk.ts).
  // With `bottom`, qemu's walk ends at the bottom's backing link, above any filter there.
  if (bottomBs) checkChainFree(top, bottomBs.backing, { endFilters: false });
  else checkChainFree(top, baseBs);
  if (!baseBs && options.backingFile !== undefined) {
    throw new BlockError(
      "BAD_ARGUMENT",
      "backing file specified, but streaming the entire chain",
    );
  }
  if (bottomBs) return { base: bottomBs.backing, baseOverlay: bottomBs };
  return { base: baseBs, baseOverlay: overlayOf(top, baseBs) };
}

function filterFilename(top: BlockNode): string {
  const file = top.driver === "raw" || top.driver === "qed"
    ? `{"driver": "${top.driver}", "file": {"driver": "file", "filename": "${top.filename}"}}`
    : `{"driver": "${top.driver}", "filename": "${top.filename}"}`;
  return `json:{"driver": "copy-on-read", "file": ${file}}`;
}

/** Internal settings of a {@linkcode StreamJob}. */
interface StreamSettings {
  id: string;
  device: BlockDevice;
  chain: StreamChain;
  options: StreamOptions;
  filterName: string;
  chunkSize: number;
  parallel: number;
}

/**
 * A running `block-stream` job. Create it with {@linkcode startStream}.
 */
export class StreamJob extends Job {
  /** Always `"stream"` (a getter, so it is known while the base constructor emits `created`). */
  get type(): JobType {
    return "stream";
  }
  /** The device whose top receives the data. */
  readonly device: BlockDevice;
  /**
   * The base when the job started (`null` for a full stream); completion
   * links the top to what is below {@linkcode StreamJob.baseOverlay} then.
   */
  readonly base: BlockNode | null;
  /** The lowest node whose data is copied. */
  readonly baseOverlay: BlockNode;
  /** The copy-on-read filter's node while the job runs. */
  readonly filterNode: BlockNode;
  /** Chunk size in bytes. */
  readonly chunkSize: number;
  /** Chunks in flight. */
  readonly parallel: number;
  /** The ranges copied first (empty: qemu's order). */
  readonly workingSet: readonly ByteRange[];
  readonly #verifier: CopyVerifier | undefined;
  #mismatch: ChecksumMismatchError | undefined;
  readonly #guestFirst: GuestFirstScheduler | undefined;
  readonly #onError: OnErrorPolicy;
  readonly #backingFile: string | undefined;
  readonly #graph: BlockGraph | undefined;
  #release: (() => void)[] = [];

  /** Use {@linkcode startStream}. */
  constructor(jobs: JobRegistry, settings: StreamSettings) {
    const { options } = settings;
    super(jobs, {
      id: settings.id,
      ...(options.autoFinalize !== undefined ? { autoFinalize: options.autoFinalize } : {}),
      ...(options.autoDismiss !== undefined ? { autoDismiss: options.autoDismiss } : {}),
    });
    this.device = settings.device;
    this.base = settings.chain.base;
    this.baseOverlay = settings.chain.baseOverlay;
    this.chunkSize = settings.chunkSize;
    this.parallel = settings.parallel;
    this.workingSet = options.workingSet ?? [];
    this.#verifier = options.verifier;
    this.#guestFirst = options.guestFirst;
    this.#onError = options.onError ?? "report";
    this.#backingFile = options.backingFile;
    this.#graph = options.graph;
    const device = this.device;
    const top = device.top;
    // Reads and writes go through the device (copy-on-read, request tracking).
    this.filterNode = forwardingNode(top, {
      nodeName: settings.filterName,
      driver: "copy-on-read",
      filename: filterFilename(top),
      readOnly: false,
      backing: null,
      filtered: top,
      read: (offset, buf) => device.read(offset, buf),
      write: (offset, data) => device.write(offset, data),
      writeZeroes: (offset, length) => device.writeZeroes(offset, length),
      flush: () => device.flush(),
      close: () => Promise.resolve(),
      setBacking: false,
    });
  }

  /**
   * The first chunk the verifier rejected, if any. The job's `error` keeps
   * qemu's errno text (`Input/output error`); this names the offset.
   */
  get checksumMismatch(): ChecksumMismatchError | undefined {
    return this.#mismatch;
  }

  /**
   * Whether there is nothing to stream (the top has no backing, or its
   * backing is the base): the whole lifecycle then runs within the microtasks
   * after {@linkcode startStream} returns; a QMP server should await
   * {@linkcode Job.concluded} before replying, as qemu writes every event first.
   */
  get nothingToStream(): boolean {
    return this.device.top === this.baseOverlay;
  }

  /** Sets the initial speed (qemu does it after creating the job) and takes the nodes. */
  setup(speed: number): void {
    this.initSpeed(speed);
    const top = this.device.top;
    this.#graph?.addNode(this.filterNode);
    this.#release.push(() => this.#graph?.removeNode(this.filterNode));
    this.#release.push(
      insertCorFilter(top, { nodeName: this.filterNode.nodeName, bottom: this.baseOverlay }),
    );
    for (let n: BlockNode | null = top; n && n !== this.base; n = n.backing) {
      this.#release.push(blockNode(n, STREAM_BLOCKER));
    }
    if (this.#verifier) this.#release.push(attachCopyVerifier(top, this.#verifier));
    if (this.#guestFirst) this.#release.push(attachGuestFirst(top, this.#guestFirst));
  }

  /** The run loop (see the module documentation). */
  protected override async run(): Promise<void> {
    const top = this.device.top;
    if (top === this.baseOverlay) return;
    const len = top.size;
    this.setTotalProgress(len);
    let offset = 0;
    let delay = 0;
    let firstError: { error: unknown } | undefined;
    let stopNow = false;
    /** Copies to retry: offset, length, bytes to account. */
    const retry: [number, number, number][] = [];
    const inflight = new Set<Promise<void>>();
    let inflightBytes = 0;
    // The first pass's pieces are often small (a file each): there `parallel` counts chunks'
    // worth of bytes in flight, up to 8 pieces per chunk, so small pieces do not each cost a round trip.
    const budget = this.parallel * this.chunkSize;
    const full = (firstPass: boolean) =>
      firstPass
        ? inflightBytes >= budget || inflight.size >= this.parallel * 8
        : inflight.size >= this.parallel;
    const serial = this.parallel === 1;
    const first = new FirstPass(this.workingSet, len);

    const copy = (at: number, n: number, count: number): Promise<void> => {
      const p = this.device.populate(at, n, { bottom: this.baseOverlay }).then(
        () => {
          this.addProgress(count);
          // qemu accounts a chunk once it is copied; with parallel chunks the dispatch is accounted instead.
          if (serial) delay = this.rateDelay(n);
        },
        (error) => {
          if (error instanceof ChecksumMismatchError) this.#mismatch ??= error;
          const action = this.errorAction(this.#onError, error, "read");
          if (action === "stop") {
            retry.push([at, n, count]);
            return;
          }
          firstError ??= { error };
          if (action === "report") {
            stopNow = true;
            return;
          }
          this.addProgress(count);
          if (serial) delay = this.rateDelay(n);
        },
      ).finally(() => {
        inflight.delete(p);
        inflightBytes -= n;
      });
      inflight.add(p);
      inflightBytes += n;
      return p;
    };

    try {
      for (;;) {
        const wait = delay;
        delay = 0;
        await this.sleep(wait);
        if (this.cancelled || stopNow) break;
        let task = retry.shift();
        const at = task ? undefined : first.next();
        if (at !== undefined) {
          // The working set first. No planning round here: the copy itself skips what the top
          // holds or the chain lacks (the filter path), so the status queries of scattered
          // ranges overlap with the copies in flight instead of costing a round trip each.
          const n = Math.min(this.chunkSize, first.rangeEnd - at);
          first.done(at, n);
          task = [at, n, n];
        } else if (!task && offset < len) {
          let n: number;
          let needed: boolean;
          try {
            const piece = await planPiece(this.device, this.baseOverlay, offset, this.chunkSize);
            [n, needed] = [piece.length, piece.copy];
          } catch (error) {
            const action = this.errorAction(this.#onError, error, "read");
            if (action === "stop") continue;
            firstError ??= { error };
            if (action === "report") break;
            [n, needed] = [Math.min(this.chunkSize, len - offset), false];
          }
          // Bytes the first pass accounted are not counted twice.
          const count = n - first.accounted(offset, n);
          if (!needed) {
            this.addProgress(count);
            offset += n;
            continue;
          }
          task = [offset, n, count];
          offset += n;
        }
        if (!task) {
          if (inflight.size === 0) break;
          await Promise.race(inflight);
          continue;
        }
        const done = copy(task[0], task[1], task[2]);
        if (!serial) delay = this.rateDelay(task[1]);
        if (serial) await done;
        else if (full(at !== undefined)) await Promise.race(inflight);
      }
    } finally {
      await Promise.all(inflight);
    }
    if (firstError) throw firstError.error;
  }

  /**
   * Removes the filter, then rewrites the backing link as qemu's
   * `stream_prepare`: to what is below the base overlay *now*, which is not
   * {@linkcode StreamJob.base} when a commit below finished first.
   */
  protected override async prepare(): Promise<void> {
    this.#releaseAll();
    await rewriteBacking(this.device.top, () => this.baseOverlay.backing, this.#backingFile);
  }

  /** Removes the filter and the blockers. */
  protected override clean(): void {
    this.#releaseAll();
  }

  #releaseAll(): void {
    for (const release of this.#release.splice(0).reverse()) release();
  }
}

/**
 * The working-set pass of a stream: walks the ranges in order, each byte
 * once (a range overlapping an earlier one continues after it), and
 * remembers what it accounted.
 */
class FirstPass {
  readonly #ranges: readonly ByteRange[];
  readonly #len: number;
  readonly #accounted = new RangeSet();
  #index = 0;
  #pos = 0;
  #tail = 0;
  #gapEnd = 0;

  constructor(ranges: readonly ByteRange[], len: number) {
    this.#ranges = ranges;
    this.#len = len;
  }

  /** The end of the unaccounted run the last {@linkcode FirstPass.next} offset starts. */
  get rangeEnd(): number {
    return this.#gapEnd;
  }

  /** The next offset to plan, or `undefined` when the pass is over. */
  next(): number | undefined {
    for (;;) {
      const [gap] = this.#pos < this.#tail
        ? this.#accounted.missing(this.#pos, this.#tail - this.#pos)
        : [];
      if (gap) {
        this.#pos = gap.offset;
        this.#gapEnd = gap.offset + gap.length;
        return this.#pos;
      }
      const r = this.#ranges[this.#index++];
      if (!r) return undefined;
      this.#pos = Math.min(r.offset, this.#len);
      this.#tail = Math.min(r.offset + r.length, this.#len);
    }
  }

  /** Marks `[at, at + n)` as accounted and moves past it. */
  done(at: number, n: number): void {
    this.#accounted.add(at, n);
    this.#pos = at + n;
  }

  /** Bytes of `[offset, offset + n)` this pass accounted. */
  accounted(offset: number, n: number): number {
    return this.#accounted.count === 0 ? 0 : this.#accounted.overlap(offset, n);
  }
}

/**
 * `block-stream`: validates the arguments in qemu's order, creates the job
 * (`created`), applies the speed (a negative one ends the job again:
 * `created`, `null`, error) and starts it (`running`).
 *
 * @example
 * ```ts ignore
 * const job = startStream(jobs, device, { jobId: "job0", speed: 1048576 });
 * jobs.on((e) => console.log(e.event, e.data));
 * await job.concluded;
 * ```
 */
export function startStream(
  jobs: JobRegistry,
  target: BlockDevice | BlockNode,
  options: StreamOptions = {},
): StreamJob {
  const device = target instanceof BlockDevice ? target : new BlockDevice(target);
  const top = device.top;
  const armed = armedExtras.get(top);
  if (armed) {
    armedExtras.delete(top);
    options = { ...armed, ...options };
  }
  const chain = resolveStreamChain(top, {
    ...options,
    ...(options.deviceName === undefined ? { deviceName: device.name || top.nodeName } : {}),
  });
  const chunkSize = options.chunkSize ?? STREAM_CHUNK;
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0 || chunkSize % 512 !== 0) {
    throw new BlockError(
      "BAD_ARGUMENT",
      `Chunk size ${chunkSize} is not a positive multiple of 512`,
    );
  }
  const parallel = options.parallel ?? DEFAULT_STREAM_PARALLEL;
  if (!Number.isSafeInteger(parallel) || parallel < 1 || parallel > 1024) {
    throw new BlockError(
      "BAD_ARGUMENT",
      `Parallel chunk count ${parallel} is not between 1 and 1024`,
    );
  }
  if (top.readOnly && top !== chain.baseOverlay) {
    throw new BlockError("READ_ONLY", "Block node is read-only");
  }
  for (const [i, r] of (options.workingSet ?? []).entries()) {
    if (
      !Number.isSafeInteger(r.offset) || !Number.isSafeInteger(r.length) || r.offset < 0 ||
      r.length < 1
    ) {
      throw new BlockError(
        "BAD_ARGUMENT",
        `Working-set range ${i} [${r.offset}, +${r.length}) is not valid`,
      );
    }
  }
  const graph = options.graph;
  const filterName = options.filterNodeName ?? graph?.autoName() ?? `#cor-${top.nodeName}`;
  if (graph?.getNode(filterName)) {
    throw new BlockError(
      "NODE_NAME_IN_USE",
      `Could not create node: Duplicate nodes with node-name='${filterName}'`,
    );
  }
  const job = new StreamJob(jobs, {
    id: options.jobId ?? device.name,
    device,
    chain,
    options,
    filterName,
    chunkSize,
    parallel,
  });
  try {
    job.setup(options.speed ?? 0);
  } catch (error) {
    job.earlyFail();
    throw error;
  }
  job.start();
  return job;
}
