/**
 * How the CLI turns failures into one line on standard error and an exit
 * code: {@linkcode CliError} for failures the verbs detect themselves, and
 * {@linkcode describeError} for everything thrown by the layers below.
 *
 * @module
 */

import { QedstreamError } from "../io/error.ts";

/**
 * A failure a verb reports itself: bad arguments, a refused operation. The
 * message is printed after `qedstream: `; `exitCode` defaults to 1 (qemu-img
 * exits 1 on usage errors).
 *
 * @example
 * ```ts
 * import { CliError } from "./error.ts";
 * const e = new CliError("Expecting image file name");
 * console.log(e.exitCode); // 1
 * ```
 */
export class CliError extends QedstreamError {
  /** The process exit code to use. */
  readonly exitCode: number;

  /** Makes a CLI error with a message and an exit code (default 1). */
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super("CLI_ERROR", message, options.cause === undefined ? {} : { cause: options.cause });
    this.exitCode = options.exitCode ?? 1;
  }
}

// strerror(3) texts for the errno codes node:fs reports, so messages read like qemu's.
const STRERROR: Record<string, string> = {
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
  EISDIR: "Is a directory",
  ENOTDIR: "Not a directory",
  EEXIST: "File exists",
  ENOSPC: "No space left on device",
  EROFS: "Read-only file system",
  EIO: "Input/output error",
  EINVAL: "Invalid argument",
  EMFILE: "Too many open files",
  ELOOP: "Too many levels of symbolic links",
  ENAMETOOLONG: "File name too long",
  EFBIG: "File too large",
};

/** The errno-style code found on an error or its causes, if any. */
function errnoOf(error: unknown): string | undefined {
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && code in STRERROR) return code;
    if (typeof code === "string" && code.startsWith("STORAGE_") && code.slice(8) in STRERROR) {
      return code.slice(8);
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * The text that describes an error in one line: a typed qedstream error's
 * own message (qemu's text where there is one), the strerror text for a
 * file-system error, else the message of whatever was thrown.
 *
 * @example
 * ```ts
 * import { describeError } from "./error.ts";
 * console.log(describeError(Object.assign(new Error("x"), { code: "ENOENT" })));
 * // No such file or directory
 * ```
 */
export function describeError(error: unknown): string {
  const errno = errnoOf(error);
  // Storage errors wrap node's "ENOENT: no such file…, open 'x'" text; qemu says just the strerror text.
  if (
    errno !== undefined && !(error instanceof QedstreamError && !error.code.startsWith("STORAGE_"))
  ) {
    return STRERROR[errno]!;
  }
  const message = error instanceof Error ? error.message : String(error);
  return oneLine(message);
}

/** Joins a multi-line message into one line. */
export function oneLine(text: string): string {
  return text.split(/\r?\n/).map((s) => s.trim()).filter((s) => s !== "").join(" ");
}

/**
 * `Could not open 'PATH': <reason>`, qemu's wording for any failure to open
 * an image, without repeating the prefix when the reason already has it.
 */
export function openFailure(path: string, error: unknown): CliError {
  const reason = describeError(error);
  const prefix = `Could not open '${path}': `;
  const message = reason.startsWith(prefix) ? reason : prefix + reason;
  return new CliError(message, { cause: error });
}
