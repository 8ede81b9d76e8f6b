/**
 * How errors of the block layer and the job core become QMP errors.
 *
 * The block layer already carries qemu's texts; only the class needs
 * choosing. qemu 7.2 answers `GenericError` for almost everything; the
 * `block-job-*` commands answer `DeviceNotActive` when the job is missing.
 *
 * @module
 */

import { QmpError } from "./error.ts";
import { QedstreamError } from "../io/error.ts";
import type { QmpCommandHandler } from "./command_registry.ts";

/**
 * The QMP error for an error thrown by the block layer or the job core, or
 * `undefined` for anything else. Usable as {@linkcode QmpServerOptions.mapError}.
 *
 * @example
 * ```ts
 * import { JobError } from "../block/error.ts";
 * import { blockErrorToQmp } from "./block_error_map.ts";
 * const e = blockErrorToQmp(new JobError("BLOCK_JOB_NOT_FOUND", "Block job 'j' not found"));
 * console.log(e?.class, e?.desc); // DeviceNotActive Block job 'j' not found
 * ```
 */
export function blockErrorToQmp(error: unknown): QmpError | undefined {
  if (error instanceof QmpError) return error;
  if (!(error instanceof QedstreamError)) return undefined;
  const errorClass = error.code === "BLOCK_JOB_NOT_FOUND" ? "DeviceNotActive" : "GenericError";
  return new QmpError(errorClass, error.message, { cause: error });
}

/** Wraps a command handler so that block-layer errors leave with qemu's class. */
export function withQmpErrors<A>(handler: QmpCommandHandler<A>): QmpCommandHandler<A> {
  const map = (e: unknown): never => {
    throw blockErrorToQmp(e) ?? e;
  };
  return (args, context) => {
    try {
      const result = handler(args, context);
      return result instanceof Promise ? result.catch(map) : result;
    } catch (e) {
      return map(e);
    }
  };
}
