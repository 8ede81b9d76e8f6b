/**
 * libvirt's block pull (`virDomainBlockPull`, and `virDomainBlockRebase`
 * with a base) over `block-stream`.
 *
 * @module
 */

import { bandwidthToSpeed } from "./bandwidth.ts";
import { findBlockJob, pullJobId } from "./block_job.ts";
import { type BlockJobEntry, execute, hasEvents, type QmpConnection } from "./connection.ts";
import { type Disk, findInChain, resolveDisk } from "./disk.ts";
import { ManageError } from "./error.ts";

/** Options of {@linkcode blockPull}. */
export interface BlockPullOptions {
  /** Bandwidth limit: MiB/s, or bytes/s with `bytes`; 0 (default) is unlimited. */
  bandwidth?: number;
  /** Read `bandwidth` as bytes/s (libvirt's `VIR_DOMAIN_BLOCK_PULL_BANDWIDTH_BYTES`). */
  bytes?: boolean;
  /**
   * Keep this image of the chain (a path) as the new backing file and pull
   * only what lies above it (`virDomainBlockRebase` with a base).
   */
  base?: string;
}

/** What {@linkcode blockPull} started. */
export interface BlockPullStarted {
  /** The resolved disk. */
  disk: Disk;
  /** The QMP job id. */
  jobId: string;
}

/** The terminal events of a job, for draining stale ones. */
const TERMINAL_EVENTS = ["BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_READY"];

/**
 * Starts pulling the backing chain of `disk` into its top image
 * (`virDomainBlockPull`, or `virDomainBlockRebase` with `base`). The job id
 * is {@linkcode pullJobId}; the bandwidth is passed as `block-stream`'s
 * `speed`.
 *
 * @example
 * ```ts ignore
 * const { jobId } = await blockPull(conn, "ov", { bandwidth: 10 }); // 10 MiB/s
 * ```
 */
export async function blockPull(
  conn: QmpConnection,
  diskName: string,
  options: BlockPullOptions = {},
): Promise<BlockPullStarted> {
  const speed = bandwidthToSpeed(options.bandwidth ?? 0, options.bytes);
  const disk = await resolveDisk(conn, diskName);
  const base = options.base === undefined ? undefined : findInChain(disk, options.base);
  const busy: BlockJobEntry | undefined = await findBlockJob(conn, disk);
  if (busy) {
    throw new ManageError(
      "VIR_ERR_OPERATION_INVALID",
      `disk '${disk.target}' already in active block job`,
    );
  }
  const jobId = pullJobId(disk);
  if (hasEvents(conn)) {
    // Events of an earlier job with the same id arrived before the query's
    // reply; take them now so that a wait for this job cannot see them.
    for (const name of TERMINAL_EVENTS) {
      for (;;) {
        try {
          await conn.waitEvent(name, { timeout: 0, filter: (e) => e.data.device === jobId });
        } catch {
          break;
        }
      }
    }
  }
  const args: Record<string, unknown> = { "job-id": jobId, device: disk.nodeName };
  if (base !== undefined) args.base = base;
  if (speed > 0) args.speed = speed;
  await execute(conn, "block-stream", args);
  return { disk, jobId };
}
