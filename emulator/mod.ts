/**
 * An embeddable emulator for other projects' tests: start an emulated
 * qemu in one call, drive it over real QMP, control time and faults, and
 * inspect the images afterwards.
 *
 * - {@linkcode startEmulator} / {@linkcode Emulator}: drives, monitors (a
 *   Unix socket, loopback TCP, or in-process with no socket), an optional
 *   guest workload, a system or virtual clock; `connect()`, `run()`,
 *   `advance()`, `injectFaults()` / `liftFaults()`, `close()` and
 *   `await using`.
 * - {@linkcode EmulatorDrive}: one drive, a QED overlay over a template
 *   ({@linkcode TemplateSpec}: bytes in memory, a sparse computed image, a
 *   simulated remote repository, an image file, an NBD export); read its
 *   bytes, `check()` and `map()` its image.
 * - {@linkcode FaultPlan} and {@linkcode faultNode}: error rate, failing
 *   ranges and outages on a drive's template.
 *
 * @example Drive a stream from your own tool's code
 * ```ts
 * import { startEmulator } from "./mod.ts";
 * await using emu = await startEmulator({
 *   drives: [{ name: "vm1", template: { type: "sparse", template: { size: 4 << 20 } } }],
 * });
 * const qmp = await emu.connect();
 * await qmp.execute("block-stream", { "job-id": "pull", device: "vm1" });
 * const done = await qmp.waitEvent("BLOCK_JOB_COMPLETED");
 * console.log(done.data.offset === done.data.len, (await emu.drive("vm1").check()).corruptions); // true 0
 * ```
 *
 * @module
 */

export { type DriveOptions, EmulatorDrive, type OverlaySpec, type TemplateSpec } from "./drive.ts";
export {
  type ConnectOptions,
  Emulator,
  type EmulatorGuest,
  type EmulatorOptions,
  type EmulatorRunOptions,
  type GuestSpec,
  type MonitorSpec,
  startEmulator,
} from "./emulator.ts";
export { EmulatorError } from "./error.ts";
export {
  type FaultCounters,
  type FaultNode,
  faultNode,
  type FaultNodeOptions,
  type FaultPlan,
  type FaultRange,
  type FaultWindow,
} from "./fault_plan.ts";
