/**
 * The QED (QEMU Enhanced Disk) format, byte-compatible with qemu 7.2.
 *
 * - {@linkcode QedImage}: create, open, read, write (qemu's allocation and
 *   flush order), write zeroes, block status and map, change the backing
 *   file, check and repair, close.
 * - Pure codecs: {@linkcode decodeHeader} / {@linkcode encodeHeader} and
 *   {@linkcode validateHeader} with qemu's error texts; {@linkcode QedTable}
 *   and the offset checks qemu applies.
 * - {@linkcode RawImage} and the file adapter {@linkcode openImageFile},
 *   which opens an image with its backing chain.
 * - Errors: {@linkcode QedFormatError} (open-time validation, qemu's text),
 *   {@linkcode QedIoError} (invalid offsets met during I/O and other refused
 *   requests), {@linkcode QedOptionError}, {@linkcode BackingChainError}.
 *
 * @example
 * ```ts
 * import { MemoryStorage } from "../io/mod.ts";
 * import { QedImage } from "./mod.ts";
 * const disk = new MemoryStorage();
 * await QedImage.create(disk, { size: 10 << 20 });
 * const image = await QedImage.open(disk);
 * await image.write(0, new Uint8Array(65536).fill(1));
 * console.log(await image.map()); // data run at host 0x50000, then unallocated
 * await image.close();
 * ```
 *
 * @module
 */

export type { BackingImage } from "./backing_image.ts";
export { BackingChainError, QedFormatError, QedIoError, QedOptionError } from "./error.ts";
export {
  decodeHeader,
  encodeHeader,
  isPowerOfTwo,
  QED_AUTOCLEAR_FEATURE_MASK,
  QED_COMPAT_FEATURE_MASK,
  QED_DEFAULT_CLUSTER_SIZE,
  QED_DEFAULT_TABLE_SIZE,
  QED_F_BACKING_FILE,
  QED_F_BACKING_FORMAT_NO_PROBE,
  QED_F_NEED_CHECK,
  QED_FEATURE_MASK,
  QED_HEADER_BYTES,
  QED_MAGIC,
  QED_MAX_BACKING_NAME,
  QED_MAX_CLUSTER_SIZE,
  QED_MAX_TABLE_SIZE,
  QED_MIN_CLUSTER_SIZE,
  QED_MIN_TABLE_SIZE,
  type QedGeometry,
  qedGeometry,
  type QedHeader,
  qedMaxImageSize,
  validateHeader,
} from "./header.ts";
export {
  type ExtentKind,
  QED_NEED_CHECK_TIMEOUT_MS,
  type QedCheckOptions,
  type QedCheckResult,
  type QedCreateOptions,
  type QedExtent,
  QedImage,
  type QedOpenOptions,
} from "./image.ts";
export { L2Cache, QED_DEFAULT_L2_CACHE_SIZE } from "./l2_cache.ts";
export {
  type ImageFormat,
  MAX_BACKING_CHAIN_DEPTH,
  type OpenedImage,
  openImageFile,
  type OpenImageFileOptions,
  probeFormat,
  resolveBackingPath,
} from "./open_file.ts";
export { RawImage, type RawOpenOptions } from "./raw_image.ts";
export {
  decodeTable,
  encodeTable,
  isValidClusterOffset,
  isValidTableOffset,
  QED_ENTRIES_PER_SECTOR,
  QED_SECTOR_BYTES,
  QED_UNALLOCATED,
  QED_ZERO_CLUSTER,
  QedTable,
} from "./table.ts";
