/**
 * Typed errors of the QED driver.
 *
 * - {@linkcode QedFormatError}: an image failed open-time validation; the
 *   message is qemu 7.2's text for the same failure.
 * - {@linkcode QedIoError}: a request met something it cannot carry out: an
 *   invalid table or cluster offset (qemu: `EINVAL`), no room for a backing
 *   name (`ENOSPC`), a write to a read-only image, a request out of range.
 * - {@linkcode QedOptionError}: invalid creation options or arguments.
 * - {@linkcode BackingChainError}: a backing chain could not be opened.
 *
 * @module
 */

import { QedstreamError } from "../io/error.ts";

/**
 * An image failed open-time validation (qemu's `bdrv_qed_do_open` checks).
 *
 * @example
 * ```ts
 * import { QedFormatError } from "./error.ts";
 * const e = new QedFormatError("QED_BAD_MAGIC", "Image not in QED format");
 * console.log(e.code); // QED_BAD_MAGIC
 * ```
 */
export class QedFormatError extends QedstreamError {}

/**
 * A request that cannot be carried out on this image: an invalid table or
 * cluster offset met during I/O (qemu answers `EINVAL`), a backing name that
 * does not fit (`ENOSPC`), a write to a read-only image, a request outside
 * the image.
 *
 * @example
 * ```ts
 * import { QedIoError } from "./error.ts";
 * const e = new QedIoError("QED_INVALID_OFFSET", "Invalid argument");
 * console.log(e instanceof QedIoError); // true
 * ```
 */
export class QedIoError extends QedstreamError {}

/**
 * Invalid options for creating an image, with qemu-img's text where it has one.
 *
 * @example
 * ```ts
 * import { QedOptionError } from "./error.ts";
 * const e = new QedOptionError("QED_BAD_TABLE_SIZE", "QED table size must be within range [1, 16] and power of 2");
 * console.log(e.code); // QED_BAD_TABLE_SIZE
 * ```
 */
export class QedOptionError extends QedstreamError {}

/**
 * A backing chain could not be opened: a missing backing file, a loop, or a
 * chain deeper than the limit.
 *
 * @example
 * ```ts
 * import { BackingChainError } from "./error.ts";
 * const e = new BackingChainError("QED_BACKING_MISSING", "Could not open backing file");
 * console.log(e.code); // QED_BACKING_MISSING
 * ```
 */
export class BackingChainError extends QedstreamError {}
