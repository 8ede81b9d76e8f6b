/**
 * The management API for disk streaming over QMP: the seed's
 * `streamDisk`/`streamDiskInfo` and libvirt's shipped block-job calls
 * (block pull, job info, set speed, abort, events, and waiting as virsh
 * does). It works unchanged against `qedstream serve` and a real
 * qemu-storage-daemon 7.2; disks are named by node/device name or by image
 * path; failures are {@linkcode ManageError}s with libvirt's codes and
 * texts.
 *
 * @example Against an emulated machine (no daemon needed)
 * ```ts
 * import { startEmulator } from "../emulator/mod.ts";
 * import { blockJobWait, blockPull, BlockJobStatus } from "./mod.ts";
 * await using emu = await startEmulator({
 *   drives: [{ name: "vm1", template: { type: "sparse", template: { size: 4 << 20 } } }],
 * });
 * const conn = await emu.connect();
 * await blockPull(conn, "vm1");
 * const { status } = await blockJobWait(conn, "vm1");
 * console.log(status === BlockJobStatus.COMPLETED); // true
 * ```
 *
 * @example Against a running daemon (needs `qedstream serve` or qemu-storage-daemon on the socket)
 * ```ts ignore
 * import { QmpClient } from "../qmp/mod.ts";
 * import { blockJobWait, blockPull, BlockJobStatus } from "./mod.ts";
 * const conn = await QmpClient.connect({ path: "/tmp/qmp.sock" });
 * await blockPull(conn, "/images/vm1.qed", { bandwidth: 10 }); // 10 MiB/s
 * const { status } = await blockJobWait(conn, "/images/vm1.qed");
 * console.log(status === BlockJobStatus.COMPLETED);
 * await conn.close();
 * ```
 *
 * @module
 */

export { bandwidthToSpeed } from "./bandwidth.ts";
export {
  blockJobAbort,
  type BlockJobAbortOptions,
  type BlockJobInfo,
  type BlockJobInfoOptions,
  blockJobSetSpeed,
  BlockJobType,
  blockJobTypeOf,
  diskOfJobId,
  findBlockJob,
  getBlockJobInfo,
  jobInfoOf,
  pullJobId,
} from "./block_job.ts";
export {
  BLOCK_JOB_EVENTS,
  type BlockJobEvent,
  blockJobEventOf,
  BlockJobStatus,
  type BlockJobStatusValue,
} from "./block_job_event.ts";
export { type BlockJobOutcome, blockJobWait, type BlockJobWaitOptions } from "./block_job_wait.ts";
export { blockPull, type BlockPullOptions, type BlockPullStarted } from "./block_pull.ts";
export * from "./block_commit.ts";
export {
  type BlockEntry,
  type BlockJobEntry,
  execute,
  hasEvents,
  type ImageInfo,
  type NamedBlockNode,
  type QmpConnection,
  type QmpEventConnection,
  type QmpEventMessage,
} from "./connection.ts";
export { type Disk, findInChain, resolveDisk } from "./disk.ts";
export { fromQmpError, ManageError, type ManageErrorCode, qmpErrorClass } from "./error.ts";
export {
  hasOneStepStream,
  streamDisk,
  StreamDiskFlags,
  streamDiskInfo,
  type StreamDiskOptions,
  type StreamDiskState,
} from "./stream_disk.ts";
