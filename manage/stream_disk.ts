/**
 * The seed's management API: `virDomainStreamDisk()` and
 * `virDomainStreamDiskInfo()`, as proposed for libvirt in 2011, over QMP.
 *
 * - `START` begins a full-device stream: a block pull (`block-stream`), so
 *   it works against any server and shows in the block job calls too.
 * - `STOP` aborts it and returns once it is gone.
 * - `ONE` streams the piece at an offset and returns the offset to continue
 *   from, with the seed-era one-step `block_stream {device, offset}` when the
 *   server lists it in `query-commands` (`qedstream serve` does). qemu 7.2
 *   has no such command, and `ONE` then fails with a `VIR_ERR_NO_SUPPORT`
 *   "not supported by this hypervisor" error rather than emulating it:
 *   `block-stream` always starts at offset 0 and cannot be bounded, so the
 *   only emulation (a job throttled to 1 byte/s, cancelled after its first
 *   copied chunk) streams the first piece the top lacks anywhere on the
 *   disk, not the piece at `offset`, and depends on timing. A caller that
 *   needs the whole disk uses `START` on either server.
 *
 * @module
 */

import { blockJobAbort, diskOfJobId, findBlockJob } from "./block_job.ts";
import { blockPull, type BlockPullOptions } from "./block_pull.ts";
import { type BlockJobEntry, execute, type QmpConnection } from "./connection.ts";
import { resolveDisk } from "./disk.ts";
import { ManageError } from "./error.ts";
import type { Clock } from "../io/clock.ts";

/** The seed's `virDomainStreamDiskFlags`. */
export const StreamDiskFlags = { ONE: 1, START: 2, STOP: 4 } as const;

/** The seed's `virStreamDiskState`: one active full-device stream. */
export interface StreamDiskState {
  /** The disk alias (the job's disk: its target name). */
  path: string;
  /** Bytes processed so far. */
  offset: number;
  /** The disk size in bytes (0 until the stream has started). */
  size: number;
}

/** Options of {@linkcode streamDisk}. */
export interface StreamDiskOptions extends Pick<BlockPullOptions, "bandwidth" | "bytes"> {
  /** The clock to poll with while `STOP` waits. Default: the system clock. */
  clock?: Clock;
}

/** Whether the server has the seed-era one-step `block_stream` command. */
export async function hasOneStepStream(conn: QmpConnection): Promise<boolean> {
  const commands = await execute<{ name: string }[]>(conn, "query-commands");
  return commands.some((c) => c.name === "block_stream");
}

/**
 * `virDomainStreamDisk(dom, disk, offset, flags)`: `flags` is exactly one of
 * {@linkcode StreamDiskFlags}.
 *
 * @returns for `ONE`, the offset to continue from (the disk size once the
 * whole disk is streamed and the image no longer needs its backing file);
 * for `START` and `STOP`, 0.
 * @throws {ManageError} `VIR_ERR_NO_SUPPORT` for `ONE` against a server
 * without the one-step command (qemu 7.2); libvirt's texts otherwise.
 *
 * @example
 * ```ts ignore
 * // A single-step walk over the whole disk (qedstream serve):
 * for (let at = 0, size = 1; at < size;) {
 *   at = await streamDisk(conn, "ov", at, StreamDiskFlags.ONE);
 *   size = (await resolveDisk(conn, "ov")).size;
 * }
 * ```
 */
export async function streamDisk(
  conn: QmpConnection,
  disk: string,
  offset: number,
  flags: number,
  options: StreamDiskOptions = {},
): Promise<number> {
  switch (flags) {
    case StreamDiskFlags.START: {
      const pull: BlockPullOptions = {};
      if (options.bandwidth !== undefined) pull.bandwidth = options.bandwidth;
      if (options.bytes !== undefined) pull.bytes = options.bytes;
      await blockPull(conn, disk, pull);
      return 0;
    }
    case StreamDiskFlags.STOP:
      await blockJobAbort(conn, disk, options.clock ? { clock: options.clock } : {});
      return 0;
    case StreamDiskFlags.ONE: {
      const target = await resolveDisk(conn, disk);
      if (!Number.isSafeInteger(offset) || offset < 0 || offset > target.size) {
        throw new ManageError(
          "VIR_ERR_INVALID_ARG",
          `offset ${offset} is outside disk '${disk}' (size ${target.size})`,
        );
      }
      if (await findBlockJob(conn, target)) {
        throw new ManageError(
          "VIR_ERR_OPERATION_INVALID",
          `disk '${target.target}' already in active block job`,
        );
      }
      if (!(await hasOneStepStream(conn))) {
        throw new ManageError(
          "VIR_ERR_NO_SUPPORT",
          "streaming a single piece is not supported by this hypervisor " +
            "(no one-step 'block_stream' command; qemu's block-stream cannot be bounded to a piece)",
        );
      }
      // Past the end there is nothing left: the walk is over.
      if (offset === target.size && target.backingChain.length === 0) return offset;
      const reply = await execute<{ offset: number; len: number }>(conn, "block_stream", {
        device: target.nodeName,
        offset,
      });
      return reply.offset;
    }
    default:
      throw new ManageError(
        "VIR_ERR_INVALID_ARG",
        `flags must be exactly one of ONE (1), START (2) or STOP (4), not ${flags}`,
      );
  }
}

/**
 * `virDomainStreamDiskInfo(dom)`: the active full-device streams (the
 * running stream jobs), each with its disk, position and size.
 *
 * @example
 * ```ts ignore
 * for (const s of await streamDiskInfo(conn)) console.log(s.path, s.offset, s.size);
 * ```
 */
export async function streamDiskInfo(conn: QmpConnection): Promise<StreamDiskState[]> {
  const jobs = await execute<BlockJobEntry[]>(conn, "query-block-jobs");
  return jobs
    .filter((j) => j.type === "stream" && j.status !== "concluded" && j.status !== "null")
    .map((j) => ({
      path: diskOfJobId(j.device),
      offset: j.offset,
      size: j.len,
    }));
}
