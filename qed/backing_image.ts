/**
 * What a QED image reads its unallocated ranges from.
 *
 * @module
 */

/**
 * Anything a QED image reads unallocated ranges from: a raw image, another
 * QED image, a block node or a remote. The QED driver reads only inside
 * `[0, size)` and zero-fills what lies past `size` itself (§7).
 *
 * @example
 * ```ts
 * import type { BackingImage } from "./backing_image.ts";
 * const ones: BackingImage = {
 *   size: 4096,
 *   read(_offset, buf) {
 *     buf.fill(1);
 *     return Promise.resolve();
 *   },
 * };
 * console.log(ones.size); // 4096
 * ```
 */
export interface BackingImage {
  /** Guest-visible size in bytes. */
  readonly size: number;
  /** Fills `buf` with the bytes at `offset`; the range lies inside `size`. */
  read(offset: number, buf: Uint8Array): Promise<void>;
}
