/**
 * libvirt's block job calls over QMP: job info, set speed and abort, with
 * libvirt's units, corner cases and texts.
 *
 * @module
 */

import { type Clock, systemClock } from "../io/clock.ts";
import { bandwidthToSpeed } from "./bandwidth.ts";
import { type BlockJobEntry, execute, type QmpConnection } from "./connection.ts";
import { type Disk, resolveDisk } from "./disk.ts";
import { ManageError, qmpErrorClass } from "./error.ts";

/** libvirt's `virDomainBlockJobType`. */
export const BlockJobType = {
  UNKNOWN: 0,
  PULL: 1,
  COPY: 2,
  COMMIT: 3,
  ACTIVE_COMMIT: 4,
  BACKUP: 5,
} as const;

/** libvirt's `virDomainBlockJobInfo`. */
export interface BlockJobInfo {
  /** A {@linkcode BlockJobType} value. */
  type: number;
  /** MiB/s (rounded up), or bytes/s when asked for bytes. */
  bandwidth: number;
  /** Progress so far, 0..end. */
  cur: number;
  /** Progress at completion. */
  end: number;
}

const MIB = 1024 * 1024;

/**
 * The job id the management API gives the pull of `disk`: `pull-<target>`,
 * with characters a job id cannot hold (an automatic node name's `#`)
 * replaced by `_`.
 */
export function pullJobId(disk: Disk): string {
  return `pull-${disk.target.replace(/[^A-Za-z0-9._-]/g, "_")}`;
}

/** The disk a job id names: `<disk>` of `pull-<disk>`, else the id itself (qemu's default job id). */
export function diskOfJobId(jobId: string): string {
  return jobId.startsWith("pull-") ? jobId.slice("pull-".length) : jobId;
}

/**
 * The block job of `disk` in `query-block-jobs`, or `undefined`: the job
 * {@linkcode pullJobId} names, or one whose id is the disk's node or device
 * name (qemu's default job id). A job that has concluded is not active.
 */
export async function findBlockJob(
  conn: QmpConnection,
  disk: Disk,
): Promise<BlockJobEntry | undefined> {
  const jobs = await execute<BlockJobEntry[]>(conn, "query-block-jobs");
  const ids = new Set([pullJobId(disk), disk.nodeName, disk.target]);
  return jobs.find((j) => ids.has(j.device) && j.status !== "concluded" && j.status !== "null");
}

/** The libvirt job type of a qemu job type. */
export function blockJobTypeOf(qemuType: string): number {
  switch (qemuType) {
    case "stream":
      return BlockJobType.PULL;
    case "mirror":
      return BlockJobType.COPY;
    case "commit":
      return BlockJobType.COMMIT;
    case "backup":
      return BlockJobType.BACKUP;
    default:
      return BlockJobType.UNKNOWN;
  }
}

/** Options of {@linkcode getBlockJobInfo}. */
export interface BlockJobInfoOptions {
  /** Report bandwidth in bytes/s instead of MiB/s rounded up (`INFO_BANDWIDTH_BYTES`). */
  bytes?: boolean;
}

/**
 * The block job of `disk` (`virDomainGetBlockJobInfo`), or `null` when it
 * has none. Follows libvirt's corner case: a job whose `len` is still 0 is
 * reported as 0 of 1 (not started) or, once it has finished, 1 of 1.
 *
 * @example
 * ```ts ignore
 * const info = await getBlockJobInfo(conn, "ov", { bytes: true });
 * if (info) console.log(`${info.cur} of ${info.end}, ${info.bandwidth} bytes/s`);
 * ```
 */
export async function getBlockJobInfo(
  conn: QmpConnection,
  diskName: string,
  options: BlockJobInfoOptions = {},
): Promise<BlockJobInfo | null> {
  const disk = await resolveDisk(conn, diskName);
  const job = await findBlockJob(conn, disk);
  return job ? jobInfoOf(job, options) : null;
}

/** libvirt's job info from a `query-block-jobs` entry. */
export function jobInfoOf(job: BlockJobEntry, options: BlockJobInfoOptions = {}): BlockJobInfo {
  const bandwidth = options.bytes ? job.speed : Math.ceil(job.speed / MIB);
  let { offset: cur, len: end } = job;
  if (end === 0) {
    cur = job.status === "waiting" || job.status === "pending" ? 1 : 0;
    end = 1;
  }
  return { type: blockJobTypeOf(job.type), bandwidth, cur, end };
}

async function activeJob(conn: QmpConnection, disk: Disk): Promise<BlockJobEntry> {
  const job = await findBlockJob(conn, disk);
  if (!job) {
    throw new ManageError(
      "VIR_ERR_OPERATION_INVALID",
      `disk ${disk.target} does not have an active block job`,
    );
  }
  return job;
}

/** A `block-job-*` command on a job that has just gone: libvirt's "no active job" text. */
async function jobCommand(
  conn: QmpConnection,
  disk: Disk,
  command: string,
  args: Record<string, unknown>,
): Promise<void> {
  try {
    await execute(conn, command, args);
  } catch (e) {
    if (qmpErrorClass((e as { cause?: unknown }).cause) === "DeviceNotActive") {
      throw new ManageError(
        "VIR_ERR_OPERATION_INVALID",
        `disk ${disk.target} does not have an active block job`,
        { cause: e },
      );
    }
    throw e;
  }
}

/**
 * Changes the bandwidth of the block job of `disk`
 * (`virDomainBlockJobSetSpeed`): MiB/s, or bytes/s with `bytes`.
 *
 * @example
 * ```ts ignore
 * await blockJobSetSpeed(conn, "ov", 0); // unlimited
 * ```
 */
export async function blockJobSetSpeed(
  conn: QmpConnection,
  diskName: string,
  bandwidth: number,
  options: { bytes?: boolean } = {},
): Promise<void> {
  const speed = bandwidthToSpeed(bandwidth, options.bytes);
  const disk = await resolveDisk(conn, diskName);
  const job = await activeJob(conn, disk);
  await jobCommand(conn, disk, "block-job-set-speed", { device: job.device, speed });
}

/** Options of {@linkcode blockJobAbort}. */
export interface BlockJobAbortOptions {
  /** Return at once instead of waiting for the job to go (libvirt's `ABORT_ASYNC`). */
  async?: boolean;
  /** The clock to poll with while waiting. Default {@linkcode systemClock}. */
  clock?: Clock;
  /** How often to poll, in ms. Default 50. */
  pollInterval?: number;
}

/**
 * Cancels the block job of `disk` (`virDomainBlockJobAbort`): synchronous
 * by default, returning once the job has left `query-block-jobs` (a job
 * kept by `auto-dismiss: false` is dismissed, as libvirt does); with
 * `async`, right after qemu accepted the cancel. The job's
 * `BLOCK_JOB_CANCELLED` event follows either way.
 *
 * @example
 * ```ts ignore
 * await blockJobAbort(conn, "ov");                  // returns when the job is gone
 * await blockJobAbort(conn, "ov2", { async: true }); // returns at once
 * ```
 */
export async function blockJobAbort(
  conn: QmpConnection,
  diskName: string,
  options: BlockJobAbortOptions = {},
): Promise<void> {
  const disk = await resolveDisk(conn, diskName);
  const job = await activeJob(conn, disk);
  await jobCommand(conn, disk, "block-job-cancel", { device: job.device, force: true });
  if (options.async) return;
  const clock = options.clock ?? systemClock;
  for (;;) {
    const jobs = await execute<BlockJobEntry[]>(conn, "query-block-jobs");
    const left = jobs.find((j) => j.device === job.device);
    if (!left) return;
    if (left.status === "concluded") {
      await execute(conn, "job-dismiss", { id: left.device });
      return;
    }
    await clock.sleep(options.pollInterval ?? 50);
  }
}
