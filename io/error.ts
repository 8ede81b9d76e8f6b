/**
 * The root of qedstream's typed errors.
 *
 * Every layer throws subclasses of {@linkcode QedstreamError} with a stable
 * `code` that callers can switch on; the message says what was wrong and
 * where. Only the QMP layer turns them into `{class, desc}` and only the CLI
 * turns them into a line on stderr.
 *
 * @module
 */

/** Options accepted by every qedstream error. */
export interface QedstreamErrorOptions {
  /** The error that caused this one. */
  cause?: unknown;
}

/**
 * Base class of all typed qedstream errors.
 *
 * @example Switch on the code
 * ```ts
 * import { QedstreamError } from "./error.ts";
 * const e = new QedstreamError("EXAMPLE", "something was wrong");
 * console.log(e.code, e.message);
 * ```
 */
export class QedstreamError extends Error {
  /** A stable, machine-readable code such as `"QED_BAD_MAGIC"`. */
  readonly code: string;

  /** Makes an error with a code and a message. */
  constructor(code: string, message: string, options: QedstreamErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
  }
}

/** An I/O request that the storage below could not carry out. */
export class StorageError extends QedstreamError {}
