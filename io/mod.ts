/**
 * Storage and time: the small interfaces below every other layer.
 *
 * - {@linkcode Storage}: positional read, write, flush, size, truncate;
 *   implemented by {@linkcode FileStorage} and {@linkcode MemoryStorage}
 *   (which can simulate a power cut).
 * - {@linkcode Clock}: `now`, `wallTime`, `sleep`; {@linkcode systemClock} is
 *   the real one.
 * - {@linkcode QedstreamError}: the root of every typed error.
 *
 * @example
 * ```ts
 * import { MemoryStorage, readFull } from "./mod.ts";
 * const disk = new MemoryStorage();
 * await disk.write(10, new Uint8Array([7]));
 * const buf = new Uint8Array(16);
 * await readFull(disk, 0, buf);
 * console.log(buf[10]); // 7
 * ```
 *
 * @module
 */

export { abortReason, type Clock, systemClock } from "./clock.ts";
export { QedstreamError, type QedstreamErrorOptions, StorageError } from "./error.ts";
export { FileStorage, type FileStorageOptions } from "./file_storage.ts";
export { MemoryStorage, type PendingWrite, type PowerCutOptions } from "./memory_storage.ts";
export { readFull, type Storage } from "./storage.ts";
