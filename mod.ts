/**
 * qedstream: disk streaming into copy-on-read QED images.
 *
 * A pure-TypeScript reference implementation and emulator of qemu's QED
 * format, copy-on-read block layer, `block-stream` job and QMP monitor. Each
 * folder's `mod.ts` documents its part; this module re-exports them:
 *
 * - `io/`: {@linkcode Storage} (file, memory with power cuts) and {@linkcode Clock}.
 * - `qed/`: {@linkcode QedImage}, {@linkcode RawImage}, the header and table codecs.
 * - `nbd/`: {@linkcode NbdClient} and {@linkcode NbdServer}.
 * - `block/`: nodes, {@linkcode BlockDevice} with copy-on-read, the job core,
 *   {@linkcode startStream} and {@linkcode streamOne}.
 * - `qmp/`: {@linkcode QmpServer} and {@linkcode QmpClient}.
 * - `sim/`: {@linkcode VirtualClock}, the simulated remote template and guest,
 *   and the provisioning scenarios.
 * - `manage/`: the management API over QMP: the seed's {@linkcode streamDisk}
 *   and libvirt's block-job calls ({@linkcode blockPull}, {@linkcode blockJobWait}, ...).
 * - `emulator/`: {@linkcode startEmulator}, an emulated machine for other
 *   projects' tests, started in one call.
 *
 * Each part is also its own entry point (`@qedstream/qedstream/qed`, `/block`,
 * `/emulator`, ...). `BlockJobInfo` here is block's (qemu's `query-block-jobs`
 * entry); manage's (libvirt's `virDomainBlockJobInfo`) is {@linkcode ManageBlockJobInfo}.
 *
 * @example Test your tool against an emulated machine
 * ```ts
 * import { startEmulator } from "./mod.ts";
 * await using emu = await startEmulator({
 *   clock: "virtual",
 *   drives: [{ name: "vm1", template: { type: "remote", template: { size: 16 << 20 } } }],
 * });
 * const qmp = await emu.connect();
 * await qmp.execute("block-stream", { "job-id": "pull", device: "vm1" });
 * await emu.run(() => qmp.waitEvent("BLOCK_JOB_COMPLETED"));
 * console.log(emu.drive("vm1").independent); // true
 * ```
 *
 * @example Stream an in-memory overlay into independence
 * ```ts
 * import { JobRegistry, MemoryStorage, QedImage, RawImage, qedNode, rawNode, startStream } from "./mod.ts";
 * const base = await RawImage.open(new MemoryStorage(new Uint8Array(1 << 20).fill(7)));
 * const disk = new MemoryStorage();
 * await QedImage.create(disk, { size: 1 << 20, backingFile: "base.raw", backingFormat: "raw" });
 * const image = await QedImage.open(disk);
 * const top = qedNode(image, { nodeName: "ov", backing: rawNode(base, { nodeName: "base" }) });
 * const job = startStream(new JobRegistry(), top, { jobId: "job0" });
 * await job.concluded;
 * console.log(image.backingFile); // undefined
 * ```
 *
 * @module
 */

export * from "./io/mod.ts";
export * from "./qed/mod.ts";
export * from "./nbd/mod.ts";
export * from "./block/mod.ts";
export * from "./qmp/mod.ts";
export * from "./sim/mod.ts";
export * from "./manage/mod.ts";
// block/ and manage/ both name a type BlockJobInfo: block's is qemu's
// query-block-jobs entry, manage's is libvirt's virDomainBlockJobInfo.
export type { BlockJobInfo } from "./block/mod.ts";
export type { BlockJobInfo as ManageBlockJobInfo } from "./manage/mod.ts";
export * from "./emulator/mod.ts";
