/**
 * The emulator's typed error.
 *
 * @module
 */

import { QedstreamError } from "../io/error.ts";

/**
 * A refused emulator request: a bad drive or monitor description, an unknown
 * drive, virtual-time control on a system clock, or a run that can no longer
 * progress.
 *
 * @example
 * ```ts
 * import { EmulatorError } from "./error.ts";
 * const e = new EmulatorError("EMULATOR_NO_DRIVE", "No drive named 'vm9'");
 * console.log(e.code); // "EMULATOR_NO_DRIVE"
 * ```
 */
export class EmulatorError extends QedstreamError {}
