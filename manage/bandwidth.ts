/**
 * libvirt's block job bandwidth: MiB/s by default, bytes/s on request, and
 * qemu's `speed` in bytes/s.
 *
 * @module
 */

import { ManageError } from "./error.ts";

/** Largest bandwidth in MiB/s whose bytes/s still fit qemu's signed 64-bit `speed`. */
const MAX_MIB = (2n ** 63n - 1n) >> 20n;
const MIB = 1024 * 1024;

/**
 * Converts a libvirt bandwidth (MiB/s, or bytes/s with `bytes`) to qemu's
 * `speed` in bytes per second, refusing overflow with libvirt's text.
 *
 * @example
 * ```ts
 * import { bandwidthToSpeed } from "./bandwidth.ts";
 * console.log(bandwidthToSpeed(2), bandwidthToSpeed(4096, true)); // 2097152 4096
 * ```
 */
export function bandwidthToSpeed(bandwidth: number, bytes = false): number {
  if (!Number.isInteger(bandwidth) || bandwidth < 0) {
    throw new ManageError(
      "VIR_ERR_INVALID_ARG",
      `bandwidth must be a non-negative integer, not ${bandwidth}`,
    );
  }
  if (bytes) {
    if (BigInt(bandwidth) > 2n ** 63n - 1n) {
      throw new ManageError("VIR_ERR_OVERFLOW", `bandwidth must be less than ${2n ** 63n - 1n}`);
    }
    return bandwidth;
  }
  if (BigInt(bandwidth) > MAX_MIB) {
    throw new ManageError("VIR_ERR_OVERFLOW", `bandwidth must be less than ${MAX_MIB}`);
  }
  return bandwidth * MIB;
}
