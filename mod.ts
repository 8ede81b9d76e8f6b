/**
 * qedstream: disk streaming into copy-on-read QED images.
 *
 * A pure-TypeScript reference implementation and emulator of qemu's QED
 * format, copy-on-read block layer, `block-stream` job and QMP monitor.
 *
 * @example
 * ```ts
 * import { MemoryStorage } from "./mod.ts";
 * const disk = new MemoryStorage();
 * console.log(await disk.size()); // 0
 * ```
 *
 * @module
 */

export * from "./io/mod.ts";
