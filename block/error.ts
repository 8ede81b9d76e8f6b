/**
 * Typed errors of the block layer and the job core.
 *
 * Messages that qemu shows to a QMP client are reproduced verbatim (they are
 * facts from `qmp-streaming.md`); the QMP layer only wraps them in
 * `{class, desc}`.
 *
 * @module
 */

import { QedstreamError } from "../io/error.ts";

/**
 * A block-graph or device error: unknown node, busy node, bad argument,
 * read-only device, failed backing change.
 *
 * @example
 * ```ts
 * import { BlockError } from "./error.ts";
 * const e = new BlockError("NODE_NOT_FOUND", "Cannot find device='x' nor node-name='x'");
 * console.log(e.code); // "NODE_NOT_FOUND"
 * ```
 */
export class BlockError extends QedstreamError {}

/**
 * A refused job command or an invalid job: verb not allowed in the current
 * status, already paused, invalid or duplicate id, negative speed.
 *
 * @example
 * ```ts
 * import { JobError } from "./error.ts";
 * const e = new JobError("JOB_NOT_FOUND", "Job not found");
 * console.log(e.message); // "Job not found"
 * ```
 */
export class JobError extends QedstreamError {}

/**
 * The errno-like kind of an I/O failure as a job reports it: `ENOSPC` makes
 * the `enospc`/`auto` policies stop, anything else is `EIO`-like.
 */
export type IoErrorKind = "EIO" | "ENOSPC" | "EPERM";

/** The C library's text for an errno kind, as qemu puts it into `error`. */
export const IO_ERROR_TEXT: Readonly<Record<IoErrorKind | "ECANCELED", string>> = {
  EIO: "Input/output error",
  ENOSPC: "No space left on device",
  EPERM: "Operation not permitted",
  ECANCELED: "Operation canceled",
};

/**
 * Classifies an error thrown by a node: `ENOSPC` when its code (or its
 * cause's) names no space, `EPERM` for a refused graph change, otherwise `EIO`.
 *
 * @example
 * ```ts
 * import { ioErrorKind } from "./error.ts";
 * console.log(ioErrorKind(Object.assign(new Error("full"), { code: "ENOSPC" }))); // "ENOSPC"
 * ```
 */
export function ioErrorKind(error: unknown): IoErrorKind {
  for (let e: unknown = error, depth = 0; e && depth < 8; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /ENOSPC|NO_SPACE|NOSPC/i.test(code)) return "ENOSPC";
    if (code === "EPERM") return "EPERM";
    e = (e as { cause?: unknown }).cause;
  }
  return "EIO";
}

/**
 * Throws `OUT_OF_RANGE` unless `[offset, offset + length)` is a range of
 * whole bytes inside `size`; `owner` names what was asked ("device", "node").
 *
 * @example
 * ```ts
 * import { checkRequestRange } from "./error.ts";
 * checkRequestRange(0, 512, 4096, "device"); // fine
 * try {
 *   checkRequestRange(4000, 512, 4096, "device");
 * } catch (e) {
 *   console.log((e as Error).message); // Request [4000, +512) is outside the device's 4096 bytes
 * }
 * ```
 */
export function checkRequestRange(
  offset: number,
  length: number,
  size: number,
  owner: string,
): void {
  if (
    !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 ||
    length < 0 || offset + length > size
  ) {
    throw new BlockError(
      "OUT_OF_RANGE",
      `Request [${offset}, +${length}) is outside the ${owner}'s ${size} bytes`,
    );
  }
}
