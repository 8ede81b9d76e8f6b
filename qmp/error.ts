/**
 * QMP errors: the `{class, desc}` pair qemu sends, as a typed error.
 *
 * A command handler throws {@linkcode QmpError} to answer with a given class
 * and text; the client throws it when the server answers with an error.
 *
 * @module
 */

import { QedstreamError } from "../io/error.ts";

/** qemu's error classes (`QapiErrorClass`, since 1.2). */
export type QmpErrorClass =
  | "GenericError"
  | "CommandNotFound"
  | "DeviceNotActive"
  | "DeviceNotFound"
  | "KVMMissingCap";

/**
 * An error as QMP reports it.
 *
 * @example
 * ```ts
 * import { QmpError } from "./error.ts";
 * const e = new QmpError("DeviceNotActive", "Block job 'j' not found");
 * console.log(e.class, e.desc); // DeviceNotActive Block job 'j' not found
 * ```
 */
export class QmpError extends QedstreamError {
  /** The error class, e.g. `GenericError`. */
  readonly class: string;
  /** The human-readable text, verbatim. */
  readonly desc: string;

  /** Makes an error with a class and qemu's text. */
  constructor(errorClass: QmpErrorClass | string, desc: string, options: { cause?: unknown } = {}) {
    super("QMP_" + errorClass, desc, options);
    this.class = errorClass;
    this.desc = desc;
  }
}

/** A `GenericError`, the class of almost every qemu error. */
export function genericError(desc: string): QmpError {
  return new QmpError("GenericError", desc);
}

/** The connection to a QMP peer failed, closed, or a wait timed out. */
export class QmpConnectionError extends QedstreamError {}
