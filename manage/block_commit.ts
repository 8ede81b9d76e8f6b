/**
 * libvirt's block commit (`virDomainBlockCommit`) over `block-commit`, and
 * waiting for it as virsh's `blockcommit --wait` does: an intermediate
 * commit ends by itself; an active commit (`active`) reaches the ready
 * phase, where the caller pivots to the base (`block-job-complete`), keeps
 * the overlay (a cancel, which qemu turns into a completion without pivot),
 * or leaves the job synchronised.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { type Clock, systemClock } from "../io/clock.ts";
import { bandwidthToSpeed } from "./bandwidth.ts";
import { findBlockJob } from "./block_job.ts";
import { blockJobEventOf, BlockJobStatus } from "./block_job_event.ts";
import type { BlockJobOutcome } from "./block_job_wait.ts";
import { type BlockJobEntry, execute, hasEvents, type QmpConnection } from "./connection.ts";
import { type Disk, findInChain, resolveDisk } from "./disk.ts";
import { ManageError } from "./error.ts";

/** Options of {@linkcode blockCommit}. */
export interface BlockCommitOptions {
  /** The image to merge into (a path in the chain). Default: the bottom of the chain. */
  base?: string;
  /** The highest image to merge (a path). Default: the active layer (then `active` is needed). */
  top?: string;
  /** Commit the active layer (libvirt's `VIR_DOMAIN_BLOCK_COMMIT_ACTIVE`). */
  active?: boolean;
  /** Bandwidth limit: MiB/s, or bytes/s with `bytes`; 0 (default) is unlimited. */
  bandwidth?: number;
  /** Read `bandwidth` as bytes/s (`VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES`). */
  bytes?: boolean;
}

/** What {@linkcode blockCommit} started. */
export interface BlockCommitStarted {
  /** The resolved disk. */
  disk: Disk;
  /** The QMP job id. */
  jobId: string;
  /** Whether it is an active commit (it will wait in the ready phase). */
  active: boolean;
}

/** The job id the management API gives the commit of `disk`: `commit-<target>`. */
export function commitJobId(disk: Disk): string {
  return `commit-${disk.target.replace(/[^A-Za-z0-9._-]/g, "_")}`;
}

function samePath(a: string, b: string, from: string): boolean {
  return a === b || resolve(a) === resolve(b) || resolve(dirname(resolve(from)), a) === resolve(b);
}

/**
 * Starts merging `top` (default: the active layer) down into `base`
 * (default: the bottom of the chain), with libvirt's checks and texts.
 *
 * @example
 * ```ts ignore
 * const started = await blockCommit(conn, "vda", { active: true });
 * await blockCommitWait(conn, started, { pivot: true });
 * ```
 */
export async function blockCommit(
  conn: QmpConnection,
  diskName: string,
  options: BlockCommitOptions = {},
): Promise<BlockCommitStarted> {
  const speed = bandwidthToSpeed(options.bandwidth ?? 0, options.bytes);
  const disk = await resolveDisk(conn, diskName);
  const topIsActive = options.top === undefined || samePath(options.top, disk.path, disk.path);
  const top = topIsActive ? undefined : findInChain(disk, options.top!);
  if (disk.backingChain.length === 0 || (top !== undefined && top === disk.backingChain.at(-1))) {
    throw new ManageError(
      "VIR_ERR_INVALID_ARG",
      `top '${top ?? disk.path}' in chain for '${disk.path}' has no backing file`,
    );
  }
  if (topIsActive && !options.active) {
    throw new ManageError(
      "VIR_ERR_INVALID_ARG",
      `commit of '${disk.target}' active layer requires active flag`,
    );
  }
  if (!topIsActive && options.active) {
    throw new ManageError(
      "VIR_ERR_INVALID_ARG",
      `active commit requested but '${top}' is not active`,
    );
  }
  const base = options.base === undefined ? undefined : findInChain(disk, options.base);
  const jobId = commitJobId(disk);
  const jobs = await execute<BlockJobEntry[]>(conn, "query-block-jobs");
  const busy = jobs.some((j) => j.device === jobId) || await findBlockJob(conn, disk);
  if (busy) {
    throw new ManageError(
      "VIR_ERR_OPERATION_INVALID",
      `disk '${disk.target}' already in active block job`,
    );
  }
  const args: Record<string, unknown> = { "job-id": jobId, device: disk.nodeName };
  if (top !== undefined) args.top = top;
  if (base !== undefined) args.base = base;
  if (speed > 0) args.speed = speed;
  await execute(conn, "block-commit", args);
  return { disk, jobId, active: topIsActive };
}

/** Options of {@linkcode blockCommitWait}. */
export interface BlockCommitWaitOptions {
  /** Once ready, switch the disk to the base (virsh's `--pivot`). */
  pivot?: boolean;
  /** Once ready, end the job and keep using the overlay (virsh's `--keep-overlay`). */
  keepOverlay?: boolean;
  /** Called with `[cur, end]` whenever they changed. */
  onProgress?: (cur: number, end: number) => void;
  /** Abort the job after this many ms. */
  timeout?: number;
  /** How often to poll, in ms. Default 100. */
  interval?: number;
  /** Default {@linkcode systemClock}. */
  clock?: Clock;
}

/** How a commit ended, and whether the disk now uses its base. */
export interface BlockCommitOutcome extends BlockJobOutcome {
  /** True after a pivot. */
  pivoted: boolean;
}

/**
 * Waits for a commit started by {@linkcode blockCommit}: until it ends, or
 * for an active commit until it is ready, then pivots, keeps the overlay,
 * or returns READY (the job stays synchronised).
 */
export async function blockCommitWait(
  conn: QmpConnection,
  started: BlockCommitStarted,
  options: BlockCommitWaitOptions = {},
): Promise<BlockCommitOutcome> {
  const clock = options.clock ?? systemClock;
  const { jobId } = started;
  const start = clock.now();
  let asked: "pivot" | "keep" | undefined;
  let last = "";
  for (;;) {
    const jobs = await execute<BlockJobEntry[]>(conn, "query-block-jobs");
    const job = jobs.find((j) => j.device === jobId);
    if (!job || job.status === "concluded") {
      const end = await endEvent(conn, jobId);
      if (job) await execute(conn, "job-dismiss", { id: jobId });
      const status = end?.status ?? BlockJobStatus.COMPLETED;
      const outcome: BlockCommitOutcome = { status, pivoted: asked === "pivot" };
      if (end?.error !== undefined) outcome.error = end.error;
      if (asked === "pivot" && status !== BlockJobStatus.COMPLETED) outcome.pivoted = false;
      return outcome;
    }
    const progress = `${job.offset}/${job.len}`;
    if (options.onProgress && progress !== last) options.onProgress(job.offset, job.len);
    last = progress;
    if (job.ready && asked === undefined) {
      if (options.pivot) {
        asked = "pivot";
        await execute(conn, "block-job-complete", { device: jobId });
      } else if (options.keepOverlay) {
        asked = "keep";
        await execute(conn, "block-job-cancel", { device: jobId });
      } else {
        return { status: BlockJobStatus.READY, pivoted: false };
      }
    }
    if (options.timeout !== undefined && clock.now() - start > options.timeout) {
      await execute(conn, "block-job-cancel", { device: jobId, force: true });
      await endEvent(conn, jobId);
      return { status: BlockJobStatus.CANCELED, pivoted: false };
    }
    await clock.sleep(options.interval ?? 100);
  }
}

/** The end event of `jobId` if the connection delivers events (briefly waited for). */
async function endEvent(conn: QmpConnection, jobId: string) {
  if (!hasEvents(conn)) return undefined;
  const stop = new AbortController();
  const filter = (e: { data: Record<string, unknown> }) => e.data.device === jobId;
  try {
    const event = await Promise.any(
      ["BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"].map((name) =>
        conn.waitEvent(name, { timeout: 5000, filter, signal: stop.signal })
      ),
    );
    return blockJobEventOf(event) ?? undefined;
  } catch {
    return undefined;
  } finally {
    stop.abort();
  }
}
