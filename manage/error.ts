/**
 * Typed errors of the management API, with libvirt's codes and texts, and
 * the one place where a QMP refusal becomes a libvirt-style error.
 *
 * @module
 */

import { QedstreamError } from "../io/error.ts";

/** The libvirt error codes the management API reports. */
export type ManageErrorCode =
  | "VIR_ERR_INVALID_ARG"
  | "VIR_ERR_OPERATION_INVALID"
  | "VIR_ERR_OPERATION_FAILED"
  | "VIR_ERR_OVERFLOW"
  | "VIR_ERR_NO_SUPPORT"
  | "VIR_ERR_INTERNAL_ERROR";

// How libvirt prefixes the message of each code (virErrorMsg), so virsh's line can be rebuilt.
const PREFIX: Record<ManageErrorCode, string> = {
  VIR_ERR_INVALID_ARG: "invalid argument",
  VIR_ERR_OPERATION_INVALID: "Requested operation is not valid",
  VIR_ERR_OPERATION_FAILED: "operation failed",
  VIR_ERR_OVERFLOW: "numerical overflow",
  VIR_ERR_NO_SUPPORT: "this function is not supported by the connection driver",
  VIR_ERR_INTERNAL_ERROR: "internal error",
};

/**
 * A failure of a management call: a libvirt error code and libvirt's text
 * (without the code's prefix), with the QMP error as `cause` where there is
 * one.
 *
 * @example
 * ```ts
 * import { ManageError } from "./error.ts";
 * const e = new ManageError("VIR_ERR_INVALID_ARG", "disk 'vdz' not found in domain");
 * console.log(e.libvirtMessage); // invalid argument: disk 'vdz' not found in domain
 * ```
 */
export class ManageError extends QedstreamError {
  /** The libvirt error code. */
  declare readonly code: ManageErrorCode;

  /** The message as libvirt formats it: the code's prefix, a colon, the text. */
  get libvirtMessage(): string {
    return `${PREFIX[this.code]}: ${this.message}`;
  }
}

/** The class of a QMP error (`QmpError` from `qmp/` carries it), if `e` is one. */
export function qmpErrorClass(e: unknown): string | undefined {
  const c = (e as { class?: unknown } | null)?.class;
  return typeof c === "string" ? c : undefined;
}

/**
 * Turns a QMP refusal of `command` into libvirt's wording: `unable to execute
 * QEMU command 'X': <qemu's text>` as an internal error, as libvirt's
 * monitor code reports any error it has no special case for. Other errors
 * (a closed connection) pass through.
 */
export function fromQmpError(command: string, e: unknown): unknown {
  if (qmpErrorClass(e) === undefined) return e;
  const desc = (e as { desc?: unknown }).desc ?? (e as Error).message;
  return new ManageError(
    "VIR_ERR_INTERNAL_ERROR",
    `unable to execute QEMU command '${command}': ${String(desc)}`,
    { cause: e },
  );
}
