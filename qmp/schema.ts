/**
 * The QMP commands qedstream knows, as qemu-storage-daemon 7.2 declares them
 * (`query-qmp-schema`): argument names, types, optionality and the enums, so
 * argument errors match qemu's before any handler runs.
 *
 * They are listed in qemu-storage-daemon's registration order; `query-commands`
 * lists them newest first, as qemu does.
 *
 * @module
 */

import { JOB_STATUSES, type JobStatus } from "../block/job_status.ts";
import { q, type QapiStruct } from "./qapi_type.ts";

/** How a command is declared: its name, its argument type, whether it may run out of band. */
export interface QmpCommandSchema {
  /** The command's name, e.g. `block-stream`. */
  readonly name: string;
  /** Its arguments (an empty struct for none). */
  readonly args: QapiStruct;
  /** Whether `exec-oob` may run it (no qemu-storage-daemon 7.2 command allows it). */
  readonly allowOob?: boolean;
  /** One line: what the command returns, for documentation. */
  readonly returns?: string;
}

/** `BlockdevOnError`. */
export const BLOCKDEV_ON_ERROR = ["report", "ignore", "enospc", "stop", "auto"] as const;
/** `JobStatus`: the job core's list, in qemu's enum order. */
export const JOB_STATUS: readonly JobStatus[] = JOB_STATUSES;
/** `JobType` (7.2). */
export const JOB_TYPE = [
  "commit",
  "stream",
  "mirror",
  "backup",
  "create",
  "amend",
  "snapshot-load",
  "snapshot-save",
  "snapshot-delete",
] as const;
/** `BlockDeviceIoStatus`. */
export const IO_STATUS = ["ok", "failed", "nospace"] as const;
/** `QMPCapability`. */
export const QMP_CAPABILITY = ["oob"] as const;

const none = (name: string) => q.struct(name, {});
const byDevice = (name: string) => q.struct(name, { device: q.str });
const byId = (name: string) => q.struct(name, { id: q.str });

/** `qmp_capabilities`. */
export const QMP_CAPABILITIES: QmpCommandSchema = {
  name: "qmp_capabilities",
  args: q.struct("qmp_capabilities", {
    "*enable": q.array(q.enumOf("QMPCapability", QMP_CAPABILITY)),
  }),
};

/** `block-stream` with every 7.2 argument, in qemu's order. */
export const BLOCK_STREAM: QmpCommandSchema = {
  name: "block-stream",
  args: q.struct("block-stream", {
    "*job-id": q.str,
    device: q.str,
    "*base": q.str,
    "*base-node": q.str,
    "*backing-file": q.str,
    "*bottom": q.str,
    "*speed": { type: q.int, default: 0 },
    "*on-error": { type: q.enumOf("BlockdevOnError", BLOCKDEV_ON_ERROR), default: "report" },
    "*filter-node-name": q.str,
    "*auto-finalize": { type: q.bool, default: true },
    "*auto-dismiss": { type: q.bool, default: true },
  }),
  returns: "{}",
};

/** Every command qedstream declares, in qemu-storage-daemon's registration order. */
export const QMP_COMMAND_SCHEMAS: readonly QmpCommandSchema[] = [
  { name: "query-block", args: none("query-block"), returns: "BlockInfo[]" },
  { name: "query-block-jobs", args: none("query-block-jobs"), returns: "BlockJobInfo[]" },
  {
    name: "query-named-block-nodes",
    args: q.struct("query-named-block-nodes", { "*flat": { type: q.bool, default: false } }),
    returns: "BlockDeviceInfo[]",
  },
  BLOCK_STREAM,
  {
    name: "block-job-set-speed",
    args: q.struct("block-job-set-speed", { device: q.str, speed: q.int }),
    returns: "{}",
  },
  {
    name: "block-job-cancel",
    args: q.struct("block-job-cancel", {
      device: q.str,
      "*force": { type: q.bool, default: false },
    }),
    returns: "{}",
  },
  { name: "block-job-pause", args: byDevice("block-job-pause"), returns: "{}" },
  { name: "block-job-resume", args: byDevice("block-job-resume"), returns: "{}" },
  { name: "block-job-complete", args: byDevice("block-job-complete"), returns: "{}" },
  { name: "block-job-dismiss", args: byId("block-job-dismiss"), returns: "{}" },
  { name: "block-job-finalize", args: byId("block-job-finalize"), returns: "{}" },
  { name: "job-pause", args: byId("job-pause"), returns: "{}" },
  { name: "job-resume", args: byId("job-resume"), returns: "{}" },
  { name: "job-cancel", args: byId("job-cancel"), returns: "{}" },
  { name: "job-complete", args: byId("job-complete"), returns: "{}" },
  { name: "job-dismiss", args: byId("job-dismiss"), returns: "{}" },
  { name: "job-finalize", args: byId("job-finalize"), returns: "{}" },
  { name: "query-jobs", args: none("query-jobs"), returns: "JobInfo[]" },
  QMP_CAPABILITIES,
  { name: "query-version", args: none("query-version"), returns: "VersionInfo" },
  { name: "query-commands", args: none("query-commands"), returns: "CommandInfo[]" },
  { name: "quit", args: none("quit"), returns: "{}" },
  // Not a qemu-storage-daemon command: only served when QmpServer's queryStatus option is set.
  { name: "query-status", args: none("query-status"), returns: "StatusInfo" },
];

/** The schema of a command by name. */
export function commandSchema(name: string): QmpCommandSchema | undefined {
  return QMP_COMMAND_SCHEMAS.find((s) => s.name === name);
}
