/**
 * Block job events in libvirt's terms: completed, failed, canceled, ready.
 *
 * @module
 */

import { blockJobTypeOf, diskOfJobId } from "./block_job.ts";
import type { QmpEventMessage } from "./connection.ts";

/** libvirt's block job event statuses (`virConnectDomainEventBlockJobStatus`). */
export const BlockJobStatus = { COMPLETED: 0, FAILED: 1, CANCELED: 2, READY: 3 } as const;

/** A {@linkcode BlockJobStatus} value. */
export type BlockJobStatusValue = (typeof BlockJobStatus)[keyof typeof BlockJobStatus];

/** A block job event in libvirt's terms. */
export interface BlockJobEvent {
  /** The job's id (qemu's `device` member): `pull-<disk>` for pulls started here. */
  device: string;
  /** The disk the job works on, when the job id names it (`pull-<disk>`), else the job id. */
  disk: string;
  /** A `BlockJobType` value. */
  type: number;
  /** A {@linkcode BlockJobStatus} value. */
  status: BlockJobStatusValue;
  /** The error text of a failed job. */
  error?: string;
}

/** The QMP events that end (or make ready) a block job. */
export const BLOCK_JOB_EVENTS = [
  "BLOCK_JOB_COMPLETED",
  "BLOCK_JOB_CANCELLED",
  "BLOCK_JOB_READY",
] as const;

/**
 * Maps a QMP event to libvirt's block job event, or `null` for other
 * events: `BLOCK_JOB_COMPLETED` without `error` → COMPLETED, with it →
 * FAILED, `BLOCK_JOB_CANCELLED` → CANCELED, `BLOCK_JOB_READY` → READY.
 *
 * @example
 * ```ts
 * import { blockJobEventOf } from "./block_job_event.ts";
 * const e = blockJobEventOf({
 *   event: "BLOCK_JOB_COMPLETED",
 *   data: { device: "pull-ov", type: "stream", len: 1, offset: 1, speed: 0 },
 * });
 * console.log(e); // { device: "pull-ov", disk: "ov", type: 1, status: 0 }
 * ```
 */
export function blockJobEventOf(event: QmpEventMessage): BlockJobEvent | null {
  const data = event.data ?? {};
  const device = String(data.device ?? "");
  const disk = diskOfJobId(device);
  const type = blockJobTypeOf(String(data.type ?? ""));
  switch (event.event) {
    case "BLOCK_JOB_COMPLETED":
      return typeof data.error === "string"
        ? { device, disk, type, status: BlockJobStatus.FAILED, error: data.error }
        : { device, disk, type, status: BlockJobStatus.COMPLETED };
    case "BLOCK_JOB_CANCELLED":
      return { device, disk, type, status: BlockJobStatus.CANCELED };
    case "BLOCK_JOB_READY":
      return { device, disk, type, status: BlockJobStatus.READY };
    default:
      return null;
  }
}
